"""Packaging: every package folder is installed, the core never imports torch, README and CI agree."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _declared_packages():
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("packages = ["):]
    return set(re.findall(r'"(pot_torch[\w.]*)"', block[:block.index("]")]))


def test_every_package_folder_is_declared():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pot_torch").rglob("__init__.py")}
    found.add("pot_torch.adapters")
    found |= {p.parent.name for p in ROOT.glob("pot_torch_*/__init__.py")}  # shipped beside the library
    assert "pot_torch_showcase" in found and found == _declared_packages()


def test_the_demo_lives_outside_the_library_and_is_installed():
    assert not (ROOT / "adapters" / "demo.py").exists() and not (ROOT / "adapters" / "synthetic.py").exists()
    code = "import pot_torch_showcase.demo as demo; print(demo.run_demo.__module__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")  # not the checkout
    assert run.returncode == 0 and run.stdout.strip() == "pot_torch_showcase.demo", run.stderr[-2000:]


def test_core_import_does_not_import_torch():
    code = "import sys, pot_torch, pot_torch.pipeline, pot_torch.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = _readme_commands()
    assert commands[:2] == ["scripts/demo", "scripts/test"]  # the README's two commands (they set up .venv)
    assert "scripts/test" in ci_lines, "README test command not run by .ci/run: scripts/test"
