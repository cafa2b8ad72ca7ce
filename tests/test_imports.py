import subprocess
import sys


def test_import_does_not_import_torch():
    code = "import sys, filtertopo, filtertopo.cli; filtertopo.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api():
    import filtertopo

    for name in filtertopo.__all__:
        assert hasattr(filtertopo, name), name
