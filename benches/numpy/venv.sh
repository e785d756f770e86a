# Sourced by the scripts that run NumPy (compare_numpy.sh, compare_convnet.sh,
# .ci/run): a venv with NumPy from pip in target/numpy-venv, made once.
# Sets $venv.
venv=target/numpy-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy
fi
