import pytest
import torch

from ws3d.ops import select_backend, use_backend
from ws3d.ops._backend import HAS_TRITON
from ws3d.ops._ext import native_supports


def test_defaults_cpu_to_native_and_cuda_to_triton(monkeypatch):
    monkeypatch.delenv("WS3D_BACKEND", raising=False)
    cpu = torch.device("cpu")
    assert select_backend(cpu) == ("native" if native_supports(cpu) else "reference")
    assert select_backend(torch.device("cuda")) == ("triton" if HAS_TRITON else "reference")


def test_environment_variable_forces_a_backend(monkeypatch):
    monkeypatch.setenv("WS3D_BACKEND", "reference")
    assert select_backend(torch.device("cuda")) == "reference"
    monkeypatch.setenv("WS3D_BACKEND", "cudnn")
    with pytest.raises(ValueError, match="unknown ws3d backend 'cudnn'"):
        select_backend(torch.device("cpu"))


def test_use_backend_overrides_and_restores(monkeypatch):
    monkeypatch.setenv("WS3D_BACKEND", "reference")
    with use_backend("triton"):
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert select_backend(torch.device("cpu")) == "triton"
    assert select_backend(torch.device("cpu")) == "reference"
    with pytest.raises(ValueError, match="unknown ws3d backend"):
        with use_backend("native-ish"):
            pass


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton installed")
def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with use_backend("triton"):
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            select_backend(torch.device("cpu"))
