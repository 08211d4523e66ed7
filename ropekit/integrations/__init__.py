"""ropekit inside other libraries' models.

``ropekit.integrations.transformers.patch(model, ...)`` puts ropekit's kernels, ReRoPE and
its context-extension schedules into a loaded Hugging Face model with one call. Imported on
use only, so ``import ropekit`` never needs transformers.
"""
