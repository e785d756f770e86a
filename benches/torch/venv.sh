# Sourced by compare_torch.sh: a venv with PyTorch (and NumPy, to read the
# data) from pip in target/torch-venv, made once. Sets $torch_venv.
#
# PyPI's Linux x86_64 wheel of torch is built for CUDA and will not import
# without the CUDA runtime's wheels, so those come too (some GB, once); the
# runs here use the CPU only (oneDNN).
torch_venv=target/torch-venv
if ! "$torch_venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv "$torch_venv"
  "$torch_venv/bin/pip" install --quiet torch numpy
fi
