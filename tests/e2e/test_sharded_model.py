"""End to end: a sharded checkpoint written by transformers is one model to git theta diff, log and ls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_diff import assert_statistics, expected
from tests.helpers import git, random_model, save_safetensors, theta

INDEX = "model/model.safetensors.index.json"
LAYER0 = "encoder.layer.0."


def save_bert(repo: Path, shard_size: str, step: int = 0, directory: str = "model") -> dict[str, np.ndarray]:
    """A tiny BERT (built from a config, nothing downloaded), its layer 0 scaled by 1.01**step, saved in shards."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import load_file

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    model = transformers.BertModel(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(LAYER0):
                parameter.mul_(1.01**step)
    model.save_pretrained(repo / directory, max_shard_size=shard_size)
    tensors = {}
    for shard in sorted((repo / directory).glob("model-*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


@pytest.fixture
def bert_repo(installed: Path, tmp_path: Path) -> tuple[Path, dict, dict]:
    """v1 in 8 shards; v2 (layer 0 changed) re-sharded into 4; then a commit that changes only a README beside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.safetensors", cwd=repo)
    v1 = save_bert(repo, "20KB")
    assert len(json.loads((repo / INDEX).read_text())["weight_map"]) == len(v1)
    commit_all(repo, "v1")
    v2 = save_bert(repo, "30KB", step=1)
    commit_all(repo, "v2")
    (repo / "model" / "README.md").write_text("a tiny BERT\n")
    commit_all(repo, "readme")
    return repo, v1, v2


def changed_names(old: dict, new: dict) -> set[str]:
    return {name for name in old if not np.array_equal(old[name].view(np.uint32), new[name].view(np.uint32))}


def test_diff_of_a_sharded_model_is_one_table_across_shards(bert_repo: tuple[Path, dict, dict]) -> None:
    repo, v1, v2 = bert_repo
    layer_shards = {
        shard
        for name, shard in json.loads(git("show", f"HEAD~2:{INDEX}", cwd=repo).stdout)["weight_map"].items()
        if name.startswith(LAYER0)
    }
    assert len(layer_shards) > 1  # the layer that changed spans shards

    for spec in ([], ["--", "model"], ["--", "model/"], ["--", INDEX]):
        data = json.loads(theta("diff", "--format", "json", "HEAD~2", "HEAD", *spec, cwd=repo).stdout)
        (checkpoint,) = data["checkpoints"]
        assert checkpoint["path"] == INDEX and (len(checkpoint["old_shards"]), len(checkpoint["new_shards"])) == (8, 4)
        tensors = {t["name"]: t for t in checkpoint["tensors"]}
        assert set(tensors) == changed_names(v1, v2) and all(name.startswith(LAYER0) for name in tensors)
        assert checkpoint["unchanged"] == len(v1) - len(tensors)  # tensors that moved shard are not changes
        for name, entry in tensors.items():
            assert_statistics(entry, expected(v1[name], v2[name], np.uint32))

    table = theta("diff", "HEAD~2", "HEAD", "--sort", "rel", "--", "model", cwd=repo).stdout.decode().splitlines()
    summaries = [line for line in table if not line.startswith("  ")]
    assert summaries == [
        f"{INDEX}, 8 -> 4 shards (HEAD~2 -> HEAD): {len(tensors)} changed, 0 added, 0 removed, "
        f"{len(v1) - len(tensors)} unchanged; {sum(t['changed'] for t in tensors.values())} elements changed, "
        f"||delta|| {checkpoint['delta_l2']:.3e}"
    ]
    rels = [float(line.split()[-2]) for line in table[2:]]
    assert len(rels) == len(tensors) and rels == sorted(rels, reverse=True)

    one = json.loads(theta("diff", "--format", "json", "HEAD~1", "--", "model/model-00001-of-00004.safetensors",
                           cwd=repo).stdout)  # fmt: skip
    assert one["checkpoints"] == []  # a shard named alone is compared alone (and it did not change since v2)


def test_working_tree_reshard_reads_the_new_shards(bert_repo: tuple[Path, dict, dict]) -> None:
    repo, _, v2 = bert_repo
    v3 = save_bert(repo, "60KB", step=2)  # new shard names, not added: the changed index names them
    data = json.loads(theta("diff", "--format", "json", "--", "model", cwd=repo).stdout)
    (checkpoint,) = data["checkpoints"]
    assert (data["old"], data["new"]) == ("index", "working tree") and len(checkpoint["new_shards"]) == 2
    assert {t["name"] for t in checkpoint["tensors"]} == changed_names(v2, v3)


def test_log_and_ls_of_a_model_directory(bert_repo: tuple[Path, dict, dict]) -> None:
    repo, v1, v2 = bert_repo
    for path in ("model", "model/", INDEX):
        lines = theta("log", path, cwd=repo).stdout.decode().splitlines()
        subjects = [line.split(None, 2)[2] for line in lines if not line.startswith(" ")]
        assert subjects == ["v2", "v1"], lines  # the README commit left the model as it was
    records = json.loads(theta("log", "-n", "1", "--format", "json", "model", cwd=repo).stdout)
    assert [r["subject"] for r in records] == ["v2"] and records[0]["changed"] == len(changed_names(v1, v2))

    listed = json.loads(theta("ls", "HEAD", "--json", "model", cwd=repo).stdout)
    assert list(listed) == [INDEX] and len(listed[INDEX]["shards"]) == 4
    assert list(listed[INDEX]["tensors"]) == list(v2)  # in shard order, each with its shard
    assert {t["shard"] for t in listed[INDEX]["tensors"].values()} == set(listed[INDEX]["shards"])
    header = theta("ls", "HEAD~2", "--no-tensors", "--", INDEX, cwd=repo).stdout.decode()
    assert header.startswith(f"{INDEX}  (safetensors, 8 shards, {len(v1)} tensors, ")
    assert theta("log", "nowhere", cwd=repo, check=False).returncode != 0


def test_plot_of_a_model_has_one_bar_per_layer_and_names_both_revisions(
    bert_repo: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    from xml.etree import ElementTree

    repo, v1, v2 = bert_repo
    out = tmp_path / "change.svg"
    theta("diff", "HEAD~2", "HEAD", "--plot", str(out), "--plot-by", "layer", "--", "model", cwd=repo)
    texts = [element.text for element in ElementTree.parse(out).iter() if element.tag.endswith("text") and element.text]
    assert texts.count("encoder.layer.0") == 1 and not any(text.startswith("model/model-") for text in texts)
    commits = [git("rev-parse", "--short", rev, cwd=repo).stdout.decode().strip() for rev in ("HEAD~2", "HEAD")]
    assert f"{INDEX}, 8 -> 4 shards: HEAD~2 ({commits[0]}) -> HEAD ({commits[1]})" in texts
    assert any(text.startswith("relative change") and "per layer" in text for text in texts)


def test_another_index_json_is_no_model_unless_named(repo: Path) -> None:
    (repo / "search.index.json").write_text('{"entries": []}\n')
    model = random_model(layers=1, width=4)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "v0")
    model["layer0.bias"] = model["layer0.bias"] + np.float32(1)
    save_safetensors(repo / "model.safetensors", model)
    (repo / "search.index.json").write_text('{"entries": [1]}\n')
    data = json.loads(theta("diff", "--format", "json", cwd=repo).stdout)
    assert [c["path"] for c in data["checkpoints"]] == ["model.safetensors"]
    named = theta("diff", "--", "search.index.json", cwd=repo, check=False)
    assert named.returncode != 0
    assert named.stderr.decode().splitlines() == [
        "git-theta: error: search.index.json: not a sharded checkpoint index (no 'weight_map' of tensor -> file)"
    ]
