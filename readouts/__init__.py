"""Readouts: trainable maps from reservoir features to targets.

Readouts are scikit-learn estimators that learn block by block through
``partial_fit``. They know arrays, not devices, stores or Ray.

- :class:`IncrementalRidge` (kind ``"ridge"``): exact incremental ridge regression.
- :class:`SklearnReadout` (kind ``"sklearn"``): a scikit-learn regressor or
  classifier, fed through its own ``partial_fit`` or refit on the data seen. A protocol
  names its ``estimator`` from :data:`ESTIMATORS` (``"Ridge"`` or
  ``"sklearn.linear_model.Ridge"``) or from the entry-point group
  ``labbench.estimators`` that installed packages register; nothing else is imported.
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from .labelling import VoteClassifier
    from .ridge import IncrementalRidge
    from .rls import FORCE, RLS
    from .sklearn_readout import SklearnReadout

__all__ = ["ESTIMATORS", "ESTIMATOR_ENTRY_POINT_GROUP", "FORCE", "MODULES", "READOUTS", "READOUT_KINDS",
           "RLS", "IncrementalRidge", "SklearnReadout", "VoteClassifier", "check_estimator_name", "estimator_class",
           "estimator_names", "make_module", "make_readout", "module_class", "parameters", "readout_class"]

#: Readout kinds known to :func:`make_readout`: ``module:Class`` import paths. The classes (and
#: scikit-learn with them) are imported on first use, so that checking a protocol imports neither.
READOUT_KINDS: dict[str, str] = {
    "ridge": "labbench.readouts.ridge:IncrementalRidge",
    "rls": "labbench.readouts.rls:RLS",
    "force": "labbench.readouts.rls:FORCE",
    "sklearn": "labbench.readouts.sklearn_readout:SklearnReadout",
    "vote": "labbench.readouts.labelling:VoteClassifier",
}

#: Unsupervised module kinds known to :func:`make_module`: ``module:Class`` import paths.
MODULES: dict[str, str] = {
    "stdp": "labbench.readouts.stdp:STDPLayer",
    "som": "labbench.readouts.som:SOM",
}

#: the names this package exports lazily (a class import pulls in scikit-learn)
_LAZY = {"IncrementalRidge": "ridge", "RLS": "rls", "FORCE": "force", "SklearnReadout": "sklearn",
         "VoteClassifier": "vote"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return readout_class(_LAZY[name])
    if name == "READOUTS":
        return {kind: readout_class(kind) for kind in READOUT_KINDS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parameters(kind: str) -> tuple[str, ...] | None:
    """The keyword parameters a readout or module kind's class takes, read from its source
    without importing it (nor scikit-learn); ``None`` when it takes ``**kwargs``.

    Raises
    ------
    ValueError
        For a kind that is neither in :data:`READOUT_KINDS` nor in :data:`MODULES`.
    """
    path = READOUT_KINDS.get(kind) or MODULES.get(kind)
    if path is None:
        raise ValueError(f"Unknown readout or module kind {kind!r}.")
    mod, _, attr = path.partition(":")
    return _init_parameters(mod, attr)


def _init_parameters(module: str, cls: str) -> tuple[str, ...] | None:
    """The parameters of ``module.cls.__init__`` after ``self``, from the module's syntax tree."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        raise LookupError(f"{module}.{cls} defines no __init__ of its own")
    if init.args.kwarg is not None:
        return None
    return tuple(a.arg for a in (*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs)[1:])


def readout_class(kind: str) -> type[BaseEstimator]:
    """The class of a readout kind (imported on first use)."""
    try:
        path = READOUT_KINDS[kind]
    except (KeyError, TypeError):
        known = ", ".join(repr(k) for k in READOUT_KINDS)
        raise ValueError(f"Unknown readout kind {kind!r}; known kinds: {known}.") from None
    mod, _, attr = path.partition(":")
    # a constant of the READOUT_KINDS table above, looked up by a protocol's kind
    return getattr(importlib.import_module(mod), attr)


#: scikit-learn estimators a protocol may name, by short name: ``module:Class`` import paths
#: (the code's own constants; a protocol may also spell one as its full path,
#: ``"sklearn.linear_model.Ridge"``, but nothing outside this table is ever imported)
ESTIMATORS: dict[str, str] = {
    name: f"sklearn.{path}:{name}" for path, names in {
        "linear_model": ("Ridge", "RidgeClassifier", "RidgeCV", "RidgeClassifierCV", "LinearRegression", "Lasso",
                         "ElasticNet", "LogisticRegression", "SGDRegressor", "SGDClassifier", "Perceptron",
                         "BayesianRidge", "HuberRegressor"),
        "svm": ("SVR", "SVC", "LinearSVR", "LinearSVC"),
        "kernel_ridge": ("KernelRidge",),
        "neighbors": ("KNeighborsRegressor", "KNeighborsClassifier"),
        "neural_network": ("MLPRegressor", "MLPClassifier"),
        "ensemble": ("RandomForestRegressor", "RandomForestClassifier"),
        "naive_bayes": ("GaussianNB",),
        "discriminant_analysis": ("LinearDiscriminantAnalysis",),
        "cross_decomposition": ("PLSRegression",),
    }.items() for name in names
}

#: entry-point group through which installed packages offer further estimators by name
ESTIMATOR_ENTRY_POINT_GROUP = "labbench.estimators"


def _estimator_entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ESTIMATOR_ENTRY_POINT_GROUP)}


def estimator_names() -> list[str]:
    """Every estimator name a protocol may use: :data:`ESTIMATORS` and the ``labbench.estimators``
    entry points (full ``sklearn.*`` paths of :data:`ESTIMATORS` are accepted too)."""
    return sorted(set(ESTIMATORS) | set(_estimator_entry_points()))


def _allowed_estimator(name: str) -> str | None:
    """The :data:`ESTIMATORS` key ``name`` spells (``"Ridge"`` or ``"sklearn.linear_model.Ridge"``)."""
    if name in ESTIMATORS:
        return name
    full = {path.replace(":", "."): short for short, path in ESTIMATORS.items()}
    return full.get(name)


def check_estimator_name(name: Any) -> str | None:
    """Why ``name`` is not an estimator a protocol may name, or ``None`` if it is (imports nothing)."""
    if not isinstance(name, str):
        return f"expected an estimator name such as 'Ridge' (got {name!r})"
    if _allowed_estimator(name) is not None or name in _estimator_entry_points():
        return None
    return (f"estimator {name!r} is not allowed: name one of {', '.join(sorted(ESTIMATORS))} (or its full "
            f"sklearn path), or one an installed package registers in the {ESTIMATOR_ENTRY_POINT_GROUP!r} "
            f"entry points")


def estimator_class(name: str) -> type:
    """The estimator class a protocol names (see :func:`check_estimator_name`); imports only
    :data:`ESTIMATORS` entries and ``labbench.estimators`` entry points.

    Raises
    ------
    ValueError
        For any other name, without importing anything.
    """
    problem = check_estimator_name(name)
    if problem is not None:
        raise ValueError(problem)
    short = _allowed_estimator(name)
    if short is not None:
        mod, _, attr = ESTIMATORS[short].partition(":")
        # a constant of the ESTIMATORS table above, never the protocol's text
        obj = getattr(importlib.import_module(mod), attr)
    else:
        # an installed package's entry point, looked up by a name that is a key of the group
        obj = _estimator_entry_points()[name].load()
    if not (inspect.isclass(obj) and hasattr(obj, "fit")):
        raise ValueError(f"estimator {name!r} is not an estimator class (one with a 'fit' method).")
    return obj


def module_class(kind: str) -> type[BaseEstimator]:
    """The class of an unsupervised module kind (imported on first use)."""
    try:
        path = MODULES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown module kind {kind!r}; known kinds: {', '.join(map(repr, MODULES))}.") from None
    mod, _, attr = path.partition(":")
    # a constant of the MODULES table above, looked up by a protocol's kind
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
        ``estimator`` may also be the name of an allowed estimator class
        (``"SGDRegressor"`` or ``"sklearn.linear_model.SGDRegressor"``, see
        :data:`ESTIMATORS`), and ``estimator_params`` a dict
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
        (naming it and the accepted ones), an estimator name that is not allowed
        (nothing is imported for it), or an unknown estimator parameter.

    Examples
    --------
    >>> make_readout("ridge", alpha=1e-4)
    IncrementalRidge(alpha=0.0001)
    >>> make_readout("sklearn", estimator="sklearn.linear_model.SGDRegressor",
    ...              estimator_params={"alpha": 0.01})
    SklearnReadout(estimator=SGDRegressor(alpha=0.01))
    """
    cls = readout_class(kind)
    params = dict(params)
    if kind == "sklearn":
        estimator_params = params.pop("estimator_params", None)
        _check_params(cls, params, f"readout kind {kind!r}", extra=("estimator_params",))
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


def _build_estimator(estimator: Any, estimator_params: Mapping[str, Any] | None) -> Any:
    """Resolve the ``estimator`` parameter of an ``"sklearn"`` readout."""
    from sklearn.base import clone
    from sklearn.linear_model import Ridge

    if estimator_params is not None and not isinstance(estimator_params, Mapping):
        raise ValueError(
            f"estimator_params must be a dict, got {type(estimator_params).__name__}."
        )
    if isinstance(estimator, str):
        estimator = estimator_class(estimator)
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
