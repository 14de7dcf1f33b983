"""Speech data: espeak-ng spoken words, the LibriSpeech layout (FLAC), features, and CTC training."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import soundfile
import torch

from denas.data import DataError, load_dataset
from denas.data.speech import ALPHABET, read_audio, synthesize_spoken_words, text_to_ids
from denas.train.command import main
from tests.train_support import one_thread, write_job  # noqa: F401

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install -y espeak-ng)"
)


@pytest.fixture(scope="module")
def words_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    return synthesize_spoken_words(
        root, words=("yes", "no", "up"), voices=("en-us", "en-gb"), speeds=(150,), pitches=(30, 50, 70)
    )


def write_librispeech(root, words_dir) -> None:
    """Two splits in LibriSpeech's layout, FLAC audio made by concatenating spoken-word clips."""
    for split, speaker in (("train-clean-5", "19"), ("dev-clean-2", "84")):
        chapter = root / split / speaker / "198"
        chapter.mkdir(parents=True)
        lines = []
        for i, phrase in enumerate(["yes no", "up yes", "no up", "yes up no"]):
            clips = [read_audio(sorted((words_dir / w).glob("*.wav"))[i % 2])[0] for w in phrase.split()]
            rate = read_audio(sorted((words_dir / "yes").glob("*.wav"))[0])[1]
            utt = f"{speaker}-198-{i:04d}"
            soundfile.write(
                chapter / f"{utt}.flac", torch.cat([torch.from_numpy(c) for c in clips]).numpy(), rate
            )
            lines.append(f"{utt} {phrase.upper()}")
        (chapter / f"{speaker}-198.trans.txt").write_text("\n".join(lines) + "\n")


def test_synthesized_words_load_as_log_mel_batches(words_dir):
    bundle = load_dataset("spoken-words", path=str(words_dir), config={"n_mels": 20})
    assert len(bundle.train) + len(bundle.test) == 18 and bundle.info["words"] == ["no", "up", "yes"]
    feats, targets = bundle.collate([bundle.train[i] for i in range(4)])
    assert feats.shape[0] == 4 and feats.shape[2] == 20 and feats.shape[1] == targets["frames"]
    assert feats.shape[1] > 30  # ~0.3-0.6 s of speech at 100 frames/s
    for k, text in enumerate(targets["texts"]):
        n = int(targets["label_lengths"][k])
        assert targets["labels"][k, :n].tolist() == text_to_ids(text)


def test_alphabet_matches_the_asr_space_vocabulary():
    from denas.spaces.asr import VOCAB

    assert tuple(ALPHABET) == VOCAB[1:]


def test_librispeech_layout_with_flac(tmp_path, words_dir):
    write_librispeech(tmp_path / "LibriSpeech", words_dir)
    bundle = load_dataset("librispeech", path=str(tmp_path / "LibriSpeech"), config={"n_mels": 16})
    assert (len(bundle.train), len(bundle.test)) == (4, 4)
    assert bundle.info["splits"] == ["dev-clean-2", "train-clean-5"]
    feats, targets = bundle.collate([bundle.test[i] for i in range(2)])
    assert targets["texts"][0] in {"yes no", "up yes", "no up", "yes up no"}
    assert feats.shape[2] == 16
    # a single split directory works too (10% held out)
    single = load_dataset(
        "librispeech", path=str(tmp_path / "LibriSpeech" / "train-clean-5"), config={"n_mels": 16}
    )
    assert len(single.train) + len(single.test) == 4


def test_librispeech_errors_name_the_file_and_layout(tmp_path):
    with pytest.raises(DataError, match="no \\*.trans.txt"):
        (tmp_path / "empty").mkdir()
        load_dataset("librispeech", path=str(tmp_path / "empty"), config={})
    chapter = tmp_path / "ls" / "train-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO\n")
    with pytest.raises(DataError) as info:
        load_dataset("librispeech", path=str(tmp_path / "ls"), config={})
    assert "1-2.trans.txt:1" in str(info.value) and "1-2-0000.flac" in str(info.value)
    with pytest.raises(DataError, match="no clips found"):
        load_dataset("spoken-words", path=str(tmp_path / "empty"), config={})


@pytest.mark.parametrize("dataset", ["spoken-words", "librispeech"])
def test_asr_trains_with_ctc_and_reports_wer(tmp_path, words_dir, dataset):
    from denas.spaces import get

    path = str(words_dir)
    if dataset == "librispeech":
        write_librispeech(tmp_path / "LibriSpeech", words_dir)
        path = str(tmp_path / "LibriSpeech")
    overrides = {"preset": "tiny"}
    structure = get("asr", overrides).sample(random.Random(1))
    job = write_job(
        tmp_path,
        "asr",
        overrides,
        epochs=3,
        batchSize=4,
        learningRate=0.003,
        dataset={"name": dataset, "path": path},
    )
    assert main([str(job), "--structure", json.dumps(structure), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["metric_name"] == "wer" and metrics["higher_is_better"] is False
    assert metrics["metric"] >= 0.0
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
