# Sourced by compare_jax.sh: a venv with JAX (CPU) from pip in
# target/jax-venv, made once. Sets $jax_venv.
jax_venv=target/jax-venv
if [ ! -x "$jax_venv/bin/python" ]; then
  python3 -m venv "$jax_venv"
  "$jax_venv/bin/pip" install --quiet "jax[cpu]"
fi
