"""The torch zoo venv shared by tools/train-parity and tools/make-torch-zoo.

`ensure()` creates ${BRAID_CACHE:-<repo>/.cache}/zoo-venv from tools/zoo-requirements.txt
(once, or again when the pins change) and re-executes the calling script inside it;
`python3 tools/zoovenv.py` only installs it and prints its python.
pip runs with its configuration files and PIP_FIND_LINKS ignored: a machine-wide wheel
folder may hold a `+cpu` torch, beside which PyPI's torchvision does not load.
"""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("BRAID_CACHE", os.path.join(REPO, ".cache"))
VENV = os.path.join(CACHE, "zoo-venv")
PINS = os.path.join(REPO, "tools", "zoo-requirements.txt")


def pins():
    out = []
    for line in open(PINS):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def install():
    """Creates the venv, or brings it to the pins; returns its python."""
    py = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, "braid.pins")
    want = "\n".join(pins())
    have = open(stamp).read() if os.path.exists(stamp) else None
    if have != want:
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        env["PIP_CONFIG_FILE"] = os.devnull
        print(f"installing {' '.join(pins())} into {VENV}", file=sys.stderr)
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + pins(), env=env)
        with open(stamp, "w") as f:
            f.write(want)
    return py


def ensure():
    """Re-executes the current script inside the venv (installing it first if needed)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    py = install()
    os.execv(py, [py] + sys.argv)


if __name__ == "__main__":
    print(install())
