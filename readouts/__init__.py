"""Readouts: trainable maps from reservoir features to targets.

Readouts are scikit-learn estimators that learn block by block through
``partial_fit``. They know arrays, not devices, stores or Ray.

- :class:`IncrementalRidge` (kind ``"ridge"``): exact incremental ridge regression.
- :class:`SklearnReadout` (kind ``"sklearn"``): any scikit-learn regressor or
  classifier, fed through its own ``partial_fit`` or refit on the data seen.
- :class:`RLS` (kind ``"rls"``): recursive least squares with a forgetting factor.
- :class:`FORCE` (kind ``"force"``): FORCE learning (Sussillo & Abbott 2009), RLS on the
  error before each update; its ``step`` learns with the output fed back.
- :class:`VoteClassifier` (kind ``"vote"``): labels units by the class they answer
  most and classifies by their vote (Diehl & Cook 2015), for STDP and SOM layers.

Unsupervised modules (:data:`MODULES`) learn without labels and feed a readout:
``"stdp"`` (:class:`~labbench.readouts.stdp.STDPLayer`) and ``"som"``
(:class:`~labbench.readouts.som.SOM`). They are imported on first use.

:func:`make_readout` and :func:`make_module` build them from a kind and keyword
parameters, as a ``[[readouts]]`` table of a protocol describes them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from sklearn.base import BaseEstimator

from .labelling import VoteClassifier
from .ridge import IncrementalRidge
from .rls import FORCE, RLS
from .sklearn_readout import SklearnReadout

__all__ = ["FORCE", "MODULES", "READOUTS", "RLS", "IncrementalRidge", "SklearnReadout", "VoteClassifier", "make_module",
           "make_readout", "module_class"]

#: Readout kinds known to :func:`make_readout`, by name.
READOUTS: dict[str, type[BaseEstimator]] = {
    "ridge": IncrementalRidge,
    "rls": RLS,
    "force": FORCE,
    "sklearn": SklearnReadout,
    "vote": VoteClassifier,
}

#: Unsupervised module kinds known to :func:`make_module`: ``module:Class`` import paths.
MODULES: dict[str, str] = {
    "stdp": "labbench.readouts.stdp:STDPLayer",
    "som": "labbench.readouts.som:SOM",
}


def module_class(kind: str) -> type[BaseEstimator]:
    """The class of an unsupervised module kind (imported on first use)."""
    try:
        path = MODULES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown module kind {kind!r}; known kinds: {', '.join(map(repr, MODULES))}.") from None
    mod, _, attr = path.partition(":")
    return getattr(importlib.import_module(mod), attr)


def make_module(kind: str, **params: Any) -> BaseEstimator:
    """Build an unsupervised module (``"stdp"``, ``"som"``) from its hyperparameters."""
    cls = module_class(kind)
    _check_params(cls, params, f"module kind {kind!r}")
    return cls(**params)


def make_readout(kind: str, **params: Any) -> BaseEstimator:
    """Build a readout from its kind and hyperparameters.

    Parameters
    ----------
    kind : str
        A key of :data:`READOUTS` (``"ridge"``, ``"sklearn"``).
    **params : dict
        Hyperparameters of the readout class. For ``kind="sklearn"``,
        ``estimator`` may also be a dotted import path of an estimator class
        (``"sklearn.linear_model.SGDRegressor"``), and ``estimator_params`` a dict
        of keyword arguments to construct it with (also accepted with a class, or
        applied with ``set_params`` to a clone of an estimator instance, or to the
        default ``Ridge`` when ``estimator`` is omitted).

    Returns
    -------
    readout : BaseEstimator
        The unfitted readout.

    Raises
    ------
    ValueError
        For an unknown kind (naming it and the known kinds), an unknown parameter
        (naming it and the accepted ones), an import path that does not resolve to
        an estimator class, or an unknown estimator parameter.

    Examples
    --------
    >>> make_readout("ridge", alpha=1e-4)
    IncrementalRidge(alpha=0.0001)
    >>> make_readout("sklearn", estimator="sklearn.linear_model.SGDRegressor",
    ...              estimator_params={"alpha": 0.01})
    SklearnReadout(estimator=SGDRegressor(alpha=0.01))
    """
    try:
        cls = READOUTS[kind]
    except (KeyError, TypeError):
        known = ", ".join(repr(k) for k in READOUTS)
        raise ValueError(f"Unknown readout kind {kind!r}; known kinds: {known}.") from None

    params = dict(params)
    if cls is SklearnReadout:
        estimator_params = params.pop("estimator_params", None)
        _check_params(SklearnReadout, params, f"readout kind {kind!r}", extra=("estimator_params",))
        params["estimator"] = _build_estimator(params.get("estimator"), estimator_params)
    else:
        _check_params(cls, params, f"readout kind {kind!r}")
    return cls(**params)


def _accepted_params(factory: Callable[..., Any]) -> list[str] | None:
    """Return the keyword names ``factory`` accepts, or ``None`` if it takes ``**kwargs``."""
    signature = inspect.signature(factory)
    names = []
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            names.append(name)
    return names


def _check_params(
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    what: str,
    extra: tuple[str, ...] = (),
) -> None:
    """Raise a ValueError naming any key of ``params`` that ``factory`` does not take."""
    accepted = _accepted_params(factory)
    if accepted is None:
        return
    accepted = accepted + list(extra)
    unknown = [name for name in params if name not in accepted]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(
            f"Unknown parameter{plural} {names} for {what}; accepted: "
            f"{', '.join(repr(a) for a in accepted)}."
        )


def _import_estimator(path: str) -> type:
    """Import an estimator class from a dotted path such as ``"sklearn.svm.SVR"``."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"estimator {path!r} is not a dotted import path such as "
            "'sklearn.linear_model.Ridge'."
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"Cannot import estimator {path!r}: {exc}") from exc
    if not (inspect.isclass(obj) and hasattr(obj, "fit")):
        raise ValueError(f"estimator {path!r} is not an estimator class (one with a 'fit' method).")
    return obj


def _build_estimator(estimator: Any, estimator_params: Mapping[str, Any] | None) -> Any:
    """Resolve the ``estimator`` parameter of an ``"sklearn"`` readout."""
    from sklearn.base import clone
    from sklearn.linear_model import Ridge

    if estimator_params is not None and not isinstance(estimator_params, Mapping):
        raise ValueError(
            f"estimator_params must be a dict, got {type(estimator_params).__name__}."
        )
    if isinstance(estimator, str):
        estimator = _import_estimator(estimator)
    if inspect.isclass(estimator):
        kwargs = dict(estimator_params or {})
        _check_params(estimator, kwargs, f"estimator {estimator.__name__}")
        return estimator(**kwargs)
    if estimator_params is None:
        return estimator
    base = Ridge() if estimator is None else clone(estimator)
    valid = base.get_params(deep=True)
    unknown = [name for name in estimator_params if name not in valid]
    if unknown:
        raise ValueError(
            f"Unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)} for estimator "
            f"{type(base).__name__}; accepted: {', '.join(repr(k) for k in valid)}."
        )
    return base.set_params(**estimator_params)
