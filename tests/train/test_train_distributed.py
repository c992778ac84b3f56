from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from robustlab.engine import evaluate, evaluate_accuracy
from robustlab.store import Store
from robustlab.train import distributed

WORKER = Path(__file__).with_name("ddp_fit_eval.py")


@pytest.mark.parametrize("n", [1, 2, 7, 60, 101])
@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_training_shards_are_equal_sized_and_cover_every_sample(n: int, w: int) -> None:
    shards = [distributed.shard_permutation(n, seed=3, epoch=1, rank=r, world_size=w) for r in range(w)]
    assert {len(s) for s in shards} == {-(-n // w)}  # equal sizes: DDP needs equal step counts
    counts = Counter(i for s in shards for i in s)
    assert set(counts) == set(range(n))
    assert sum(counts.values()) - n < w  # padding repeats fewer than world_size samples


def test_training_order_depends_on_seed_and_epoch_only() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return distributed.shard_permutation(50, seed=seed, epoch=epoch)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 0)) == list(range(50))
    state = torch.get_rng_state()
    order(0, 2)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    with pytest.raises(ValueError, match="rank"):
        distributed.shard_permutation(5, seed=0, epoch=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        distributed.shard_permutation(0, seed=0, epoch=0)


def test_helpers_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched_by_torchrun() and not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    distributed.barrier()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    assert distributed.unwrap_model(model) is model
    assert distributed.init_distributed("cpu") == torch.device("cpu")
    assert not distributed.is_distributed()  # not launched by torchrun: nothing to join
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.launched_by_torchrun()
    assert distributed.resolve_device("cuda") == torch.device("cuda", 3)
    assert distributed.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.slow
def test_two_process_training_and_sharded_evaluation(tmp_path: Path, make_data, make_model, torchrun) -> None:
    torchrun(WORKER, tmp_path)

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in reports] == [0, 1] and all(r["world_size"] == 2 for r in reports)

    # evaluation: contiguous shards of 51 + 50, no padding, every index exactly once
    seen = reports[0]["indices"] + reports[1]["indices"]
    assert sorted(seen) == list(range(101)) and len(seen) == 101
    assert [len(r["indices"]) for r in reports] == [51, 50]
    # both ranks return the global (correct, count)
    assert reports[0]["count"] == reports[1]["count"] == 101
    assert reports[0]["correct"] == reports[1]["correct"]

    # DDP kept the replicas identical; rank 0 checkpointed the same weights
    params = [torch.load(tmp_path / f"params_rank{r}.pt", weights_only=True) for r in range(2)]
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["epoch"] == 2
    assert all(torch.equal(v, params[0][k]) for k, v in checkpoint["model"].items())

    # histories agree across ranks (metrics are reduced), with 60 samples -> 30 per rank -> 4 steps of 8
    assert reports[0]["history"] == reports[1]["history"]
    assert reports[0]["steps"] == 8 and not reports[0]["training"]
    assert reports[0]["history"][-1]["train_loss"] < reports[0]["history"][0]["train_loss"]

    # the reduced count matches a single-process evaluation of the trained weights
    model = make_model()
    model.load_state_dict(params[0])
    expected = evaluate_accuracy(model, make_data(101, seed=2, wrong_every=7))
    assert (reports[0]["correct"], reports[0]["count"]) == expected

    # evaluate() under torchrun: both ranks hold the global cells, equal to one process's (per-sample seeds),
    # and the store got each cell once, from rank 0
    assert reports[0]["cells"] == reports[1]["cells"]
    suite = "clean,noise:sigmas=0.3,occlusion:ratios=0.5,patch=4"
    single = evaluate(model, make_data(101, seed=2, wrong_every=7), suite, batch_size=16, seed=5)
    assert reports[0]["cells"] == [[c.key.perturbation, c.key.params_json, c.value, c.n] for c in single]
    with Store(tmp_path / "ddp.db") as store:
        rows = store.results()
    assert len(rows) == 3 and set(rows["n"]) == {101}
    assert 80 < expected[0] < 101  # flipped labels keep a good model below 100 %
