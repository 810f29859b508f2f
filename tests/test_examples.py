"""Every script in examples/ runs as ``python examples/NAME.py --quick`` and prints what it promises."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(name, *args):
    run = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--quick", *args], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_every_example_has_a_test():
    tested = {"training_post_step.py", "torchvision_classification.py", "pot_script_ported.py", "cascaded_model.py",
              "transformer.py"}
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == tested


def test_training_post_step(tmp_path):
    out = _run("training_post_step.py", "-o", str(tmp_path / "int8"))
    assert re.search(r"MulticlassAccuracy: FP32 [\d.]+ -> INT8 [\d.]+", out)
    assert "INT8 module predictions: [" in out
    assert (tmp_path / "int8" / "Sequential.xml").is_file()


def test_torchvision_classification():
    out = _run("torchvision_classification.py")
    match = re.search(r"resnet18 accuracy on 48 images: FP32 ([\d.]+), INT8 ([\d.]+)", out)
    assert match and all(0 <= float(v) <= 1 for v in match.groups())


def test_pot_script_ported(tmp_path):
    out = _run("pot_script_ported.py", "-o", str(tmp_path / "optimized"))
    assert "DefaultQuantization:" in out and "AccuracyAwareQuantization:" in out
    for folder in ("default", "accuracy_aware"):
        assert (tmp_path / "optimized" / folder / "cnn_int8.xml").is_file()
    assert len(re.findall(r"'accuracy@top1'", out)) == 3


def test_cascaded_model():
    out = _run("cascaded_model.py")
    counts = dict(re.findall(r"(proposal|refinement): (\d+) FakeQuantize ops", out))
    assert set(counts) == {"proposal", "refinement"} and all(int(c) > 0 for c in counts.values())
    assert re.search(r"accuracy: FP32 [\d.]+, INT8 [\d.]+", out)


def test_transformer():
    out = _run("transformer.py")
    assert "'input_ids'" in out and "'attention_mask'" in out
    match = re.search(r"(\d+) FakeQuantize ops", out)
    assert match and int(match.group(1)) > 0
    assert re.search(r"accuracy: FP32 [\d.]+, INT8 [\d.]+", out)
