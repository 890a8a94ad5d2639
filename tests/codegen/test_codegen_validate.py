"""Plan file validation: accepts what codegen writes, rejects hand-corrupted copies naming the field."""
from __future__ import annotations

import json

import pytest

from seesaw.codegen import (
    SCHEMA_VERSION, plan_json_schema, validate_plan_data, validate_plan_file, write_json_schema, write_plan,
)
from seesaw.ir import InputError


def _err(data, **kw) -> InputError:
    with pytest.raises(InputError) as err:
        validate_plan_data(data, **kw)
    return err.value


def _index(program: list, op: str, nth: int = 0) -> int:
    return [k for k, ins in enumerate(program) if ins["op"] == op][nth]


def test_accepts_written_plans(tmp_path, pp2_tp2, dp2, cfg):
    for plan in (pp2_tp2, dp2):
        path = tmp_path / "plan.json"
        write_plan(plan, path, indent=1)
        assert validate_plan_file(path) == plan
        assert validate_plan_file(path, cfg) == plan


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError) as err:
        validate_plan_file(missing)
    assert err.value.source == str(missing) and err.value.field == "plan" and "cannot read" in err.value.problem
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1.0",\n  oops}')
    with pytest.raises(InputError) as err:
        validate_plan_file(bad)
    assert err.value.field == "plan" and "malformed JSON" in err.value.problem and "line 2" in err.value.problem
    assert str(err.value).startswith(f"{bad}: plan: ")
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    with pytest.raises(InputError) as err:
        validate_plan_file(listy)
    assert err.value.field == "plan" and "object" in err.value.problem


def test_error_carries_source_for_consistency_errors(tmp_path, pp2_tp2_data):
    pp2_tp2_data["summary"]["gpu_kv_tokens"] = 7
    path = tmp_path / "p.json"
    path.write_text(json.dumps(pp2_tp2_data))
    with pytest.raises(InputError) as err:
        validate_plan_file(path)
    assert str(err.value).startswith(f"{path}: summary.gpu_kv_tokens: ")


@pytest.mark.parametrize("version,text", [("2.0", "newer"), ("1.4", "newer"), ("one", "MAJOR.MINOR"),
                                          (None, "missing")])
def test_schema_version(pp2_tp2_data, version, text):
    pp2_tp2_data["schema_version"] = version
    pp2_tp2_data["new_section_of_v2"] = {}  # a newer file's unknown keys must not hide the version error
    e = _err(pp2_tp2_data)
    assert e.field == "schema_version" and text in e.problem


def test_older_minor_or_same_version_accepted(pp2_tp2_data):
    """1.1 added optional fields (the prediction method and closed form, the baseline's engine knobs), 1.2 the
    optional ``ranks_listed`` and the mixture-of-experts opcodes, 1.3 the layouts' optional ``ep``: a 1.0 file
    (no ``ep``) still validates."""
    assert SCHEMA_VERSION == "1.3"
    validate_plan_data(pp2_tp2_data)
    for section in ("prefill", "decode"):
        del pp2_tp2_data[section]["layout"]["ep"]
    for key in ("prefill", "decode", "best_static"):
        pp2_tp2_data["summary"][key].pop("ep", None)
    pp2_tp2_data["schema_version"] = "1.0"
    validate_plan_data(pp2_tp2_data)


def test_schema_errors_name_the_field_path(pp2_tp2_data):
    d = pp2_tp2_data
    d["decode"]["ranks"][1]["program"][2]["op"] = "matmul"
    e = _err(d)
    assert e.field == "decode.ranks[1].program[2].op" and "embedding" in e.problem


def test_unknown_key_is_rejected(pp2_tp2_data):
    pp2_tp2_data["decode"]["ranks"][0]["program"][0]["grop"] = 0
    e = _err(pp2_tp2_data)
    assert e.field == "decode.ranks[0].program[0].grop" and "Extra inputs" in e.problem


def test_missing_key_and_bad_shard_slice(pp2_tp2_data):
    del pp2_tp2_data["summary"]["decode_max_seqs"]
    e = _err(pp2_tp2_data)
    assert e.field == "summary.decode_max_seqs" and "required" in e.problem.lower()


def test_bad_shard_slice_type(pp2_tp2_data):
    pp2_tp2_data["decode"]["ranks"][0]["weight_shards"]["model.layers.0.self_attn.q_proj.weight"]["start"] = "x"
    e = _err(pp2_tp2_data)
    assert e.field == "decode.ranks[0].weight_shards[model.layers.0.self_attn.q_proj.weight].start"


def test_dp_must_match(dp2_data):
    dp2_data["decode"]["layout"] = {"dp": 4, "tp": 1, "pp": 1}
    e = _err(dp2_data)
    assert e.field == "decode.layout.dp"


def test_world_size_must_match_cluster(pp2_tp2_data):
    pp2_tp2_data["cluster"]["num_gpus"] = 4
    assert _err(pp2_tp2_data).field == "prefill.layout"
    del pp2_tp2_data["cluster"]["num_gpus"]
    assert _err(pp2_tp2_data).field == "cluster.num_gpus"


def test_stage_layers_contiguous_and_covering(pp2_tp2_data):
    pp2_tp2_data["prefill"]["stage_layers"] = [[0, 2], [3, 4]]
    e = _err(pp2_tp2_data)
    assert e.field == "prefill.stage_layers[1]" and "contiguous" in e.problem


def test_stage_layers_must_cover_all_layers(pp2_tp2_data):
    pp2_tp2_data["decode"]["stage_layers"] = [[0, 3]]
    e = _err(pp2_tp2_data)
    assert e.field == "decode.stage_layers" and "4" in e.problem


def test_rank_coords_checked(pp2_tp2_data):
    pp2_tp2_data["decode"]["ranks"][1]["tp_rank"] = 0
    assert _err(pp2_tp2_data).field == "decode.ranks[1].tp_rank"


def test_process_group_checked(dp2_data):
    dp2_data["decode"]["process_groups"][1]["ranks"] = [1, 2]
    assert _err(dp2_data).field == "decode.process_groups[1].ranks"


def test_shard_map_with_foreign_tensor(pp2_tp2_data):
    pp2_tp2_data["prefill"]["ranks"][0]["weight_shards"]["model.norm.weight"] = None
    e = _err(pp2_tp2_data)
    assert e.field == "prefill.ranks[0].weight_shards[model.norm.weight]" and "stage 0" in e.problem


def test_shard_map_missing_a_tensor(pp2_tp2_data):
    rank = pp2_tp2_data["prefill"]["ranks"][1]
    del rank["weight_shards"]["model.norm.weight"]
    for ins in rank["program"]:
        ins["weights"] = [w for w in ins.get("weights", []) if w != "model.norm.weight"]
    e = _err(pp2_tp2_data)
    assert e.field == "prefill.ranks[1].weight_shards" and "model.norm.weight" in e.problem


def test_program_weight_not_in_shard_map(pp2_tp2_data):
    rank = pp2_tp2_data["prefill"]["ranks"][1]
    del rank["weight_shards"]["model.norm.weight"]
    e = _err(pp2_tp2_data)
    assert e.field.startswith("prefill.ranks[1].program[") and e.field.endswith("].weights")


@pytest.mark.parametrize("corrupt,text", [
    ({"start": 16, "stop": 48}, "tile"),  # overlaps rank 0's [0, 32)
    ({"start": 32, "stop": 60}, "cover [0, 60)"),  # leaves [60, 64) uncovered
    (None, "mixes"),  # whole tensor on one rank, a slice on the other
    ({"dim": 1, "start": 32, "stop": 64}, "dims"),
])
def test_tp_slices_must_tile_the_tensor(pp2_tp2_data, corrupt, text):
    name = "model.layers.2.self_attn.q_proj.weight"
    shards = pp2_tp2_data["decode"]["ranks"][1]["weight_shards"]
    shards[name] = None if corrupt is None else {**shards[name], **corrupt}
    e = _err(pp2_tp2_data)
    assert e.field == f"decode.ranks[0].weight_shards[{name}]" and text in e.problem


def test_collective_group_must_exist(pp2_tp2_data):
    program = pp2_tp2_data["decode"]["ranks"][0]["program"]
    k = _index(program, "all_reduce", 3)
    program[k]["group"] = 5
    e = _err(pp2_tp2_data)
    assert e.field == f"decode.ranks[0].program[{k}].group" and "not in" in e.problem


def test_collective_group_must_contain_rank(dp2_data):
    program = dp2_data["decode"]["ranks"][0]["program"]
    k = _index(program, "all_gather")
    program[k]["group"] = 1  # replica 1's TP group
    e = _err(dp2_data)
    assert e.field == f"decode.ranks[0].program[{k}].group" and "does not contain rank 0" in e.problem


def test_send_peer_checked(dp2_data):
    program = dp2_data["prefill"]["ranks"][0]["program"]
    k = _index(program, "send")
    program[k]["peer"] = 3  # the other replica's last stage
    e = _err(dp2_data)
    assert e.field == f"prefill.ranks[0].program[{k}].peer" and "pipeline" in e.problem


def test_send_without_recv(pp2_tp2_data):
    program = pp2_tp2_data["prefill"]["ranks"][1]["program"]
    del program[_index(program, "recv")]
    e = _err(pp2_tp2_data)
    assert e.field == "prefill.ranks[0].program" and "1 send(s) to rank 1" in e.problem


def test_instruction_layer_outside_stage(pp2_tp2_data):
    program = pp2_tp2_data["prefill"]["ranks"][0]["program"]
    k = _index(program, "rope")
    program[k]["layer"] = 3
    assert _err(pp2_tp2_data).field == f"prefill.ranks[0].program[{k}].layer"


@pytest.mark.parametrize("path,value", [
    (("summary", "gpu_kv_tokens"), 7),
    (("summary", "prefill"), {"dp": 1, "tp": 2, "pp": 1}),
    (("summary", "predicted_tokens_per_s"), 1.5),
    (("summary", "breakdown", "decode_s"), 9.0),
    (("summary", "speedup_vs_best_static"), 3.0),
    (("summary", "static"), True),
    (("kv", "gpu_pages_per_rank"), 1),
    (("schedule", "static"), True),
])
def test_summary_and_sections_must_agree(pp2_tp2_data, path, value):
    node = pp2_tp2_data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _err(pp2_tp2_data).field == ".".join(path)


def test_fingerprint_checked(pp2_tp2_data, make_config):
    other = make_config(num_hidden_layers=6)
    e = _err(pp2_tp2_data, cfg=other)
    assert e.field == "model.fingerprint" and "num_hidden_layers" in e.problem
    pp2_tp2_data["model"]["fingerprint"]["hidden_size"] = "wide"
    assert _err(pp2_tp2_data).field == "model.fingerprint.hidden_size"


def test_json_schema(tmp_path):
    schema = plan_json_schema()
    assert schema["title"] == "ExecutionPlan" and schema["x-schema-version"] == SCHEMA_VERSION
    assert {"schema_version", "model", "prefill", "decode", "kv", "schedule", "prediction",
            "summary"} <= set(schema["required"]) | set(schema["properties"])
    assert schema["additionalProperties"] is False
    ops = schema["$defs"]["Instruction"]["properties"]["op"]["enum"]
    assert {"all_reduce", "sample", "router", "moe_experts"} <= set(ops) and len(ops) == 15
    path = tmp_path / "plan.schema.json"
    write_json_schema(path)
    assert json.loads(path.read_text()) == schema


@pytest.mark.parametrize("key, value, text", [
    ("decode_max_seqs", 0, "at least 1"),
    ("max_prefill_tokens", 0, "at least 1"),
    ("prefill_to_decode_threshold_tokens", 10**9, "exceeds the host buffer"),
    ("decode_to_prefill_threshold_tokens", 4000, "must be below the prefill->decode threshold (4000 tokens)"),
])
def test_schedule_values_the_runtime_cannot_run_are_refused(pp2_tp2_data, key, value, text):
    """Before, `seesaw-plan validate` accepted these and the runtime stalled or refused them mid-run."""
    pp2_tp2_data["schedule"][key] = value
    if key in pp2_tp2_data["summary"]:
        pp2_tp2_data["summary"][key] = value
    e = _err(pp2_tp2_data)
    assert e.field == f"schedule.{key}" and text in e.problem


def test_an_expert_parallel_degree_that_does_not_divide_tp_is_refused(pp2_tp2_data):
    pp2_tp2_data["decode"]["layout"]["ep"] = 3
    e = _err(pp2_tp2_data)
    assert e.field.startswith("decode.layout") and "ep=3" in e.problem
