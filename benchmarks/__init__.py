"""Benchmarks of sal_optax: the main job compares an optimizer with and without SAL.

Run it with ``python -m benchmarks.compare``. The library never imports this
package.
"""
