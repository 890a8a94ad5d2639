"""Seesaw runtime (issue 3): executes plan files; reads only plans and IR rules."""
