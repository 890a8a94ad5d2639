"""Seesaw runtime: executes plan files; reads only plans and IR rules."""
