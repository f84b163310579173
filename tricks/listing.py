"""What `python -m tricks.apply --list` says about a named recipe: its own description, and for a scaled variant of a
heavy recipe (the CPU's ResNet9 at a quarter width, the base CNN, K-means with 400 centroids) its own settings and
parameter count, never the full-size recipe's."""

from __future__ import annotations

import inspect
from typing import Any

from tricks.recipe import Recipe


def feature_width(recipe: Recipe) -> int | None:
    """The width of the feature vectors a data trick gives the model (K-means: 4 pooled quadrants x centroids)."""
    if recipe.features != "kmeans":
        return None
    from tricks.kmeans import kmeans

    default = inspect.signature(kmeans).parameters["n_centroids"].default
    return 4 * int(dict(recipe.features_kwargs).get("n_centroids", default))


def recipe_params(recipe: Recipe) -> int:
    """Parameters the recipe's model uses in its forward pass, with its transforms and its input's real width."""
    from tricks.catalog import get_trick
    from tricks.models import build_model
    from tricks.transforms import params_used

    kwargs: dict[str, Any] = dict(recipe.model_kwargs)
    width = feature_width(recipe)
    if width is not None:
        kwargs["d_in"] = width
    model = build_model(recipe.model, **kwargs)
    for t in recipe.transforms:
        model = get_trick(t.name).build(**dict(t.params))(model)
    return params_used(model, (2, width) if width is not None else None)


def describe(name: str, recipe: Recipe) -> str:
    """The recipe's line in --list: its description; a scaled variant's own settings and parameter count."""
    if not recipe.scaled:
        return recipe.description
    full = name.rsplit("@", 1)[0]
    return f"{full} scaled for a CPU: {recipe.scaled}; {recipe_params(recipe):,} parameters"
