"""The built-in model families and the resolution of `model.family`.

BUILTIN_FAMILIES is the one list of built-in families (the first is the default of model.family);
importing this module registers each one's config section with the config tree
(calo_ablate.config.register_family_section), so every entry point that builds a Config imports it
first. Adding a family is a package under calo_ablate/model/ and one line in this list.
"""

from __future__ import annotations

import importlib

from calo_ablate.config import Config, register_family_section
from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.family import CaloDiffusionFamily
from calo_ablate.model.caloflow.family import CaloFlowFamily
from calo_ablate.model.caloscore.family import CaloScoreFamily
from calo_ablate.model.interface import TOTAL_LOSS, ModelFamily

__all__ = ["BUILTIN_FAMILIES", "family_class", "load_family"]

BUILTIN_FAMILIES: dict[str, type[ModelFamily]] = {
    "caloscore_v2": CaloScoreFamily,
    "calodiffusion": CaloDiffusionFamily,
    "caloflow": CaloFlowFamily,
}
for _family in BUILTIN_FAMILIES.values():
    register_family_section(_family.section)


def _import_family(path: str) -> type[ModelFamily]:
    module_name, _, class_name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except ImportError as err:
        msg = f"model.family {path!r}: cannot import module {module_name!r} ({err})"
        raise ConfigError(msg) from err
    except AttributeError:
        msg = f"model.family {path!r}: module {module_name!r} has no attribute {class_name!r}"
        raise ConfigError(msg) from None
    if not (isinstance(found, type) and issubclass(found, ModelFamily)):
        msg = f"model.family {path!r}: {found!r} is not a subclass of calo_ablate.model.interface.ModelFamily"
        raise ConfigError(msg)
    missing = sorted(getattr(found, "__abstractmethods__", ()))
    if missing:
        msg = f"model.family {path!r}: {class_name} does not implement {', '.join(missing)}"
        raise ConfigError(msg)
    if not found.loss_names or found.loss_names[0] != TOTAL_LOSS:
        msg = f"model.family {path!r}: {class_name}.loss_names {found.loss_names!r} must start with " \
              f"{TOTAL_LOSS!r} (the total)"
        raise ConfigError(msg)
    return found


def family_class(name: str) -> type[ModelFamily]:
    """The family class of a `model.family` value (ConfigError naming the value when there is none)."""
    if name in BUILTIN_FAMILIES:
        return BUILTIN_FAMILIES[name]
    if ":" not in name:
        msg = f"model.family {name!r}: expected one of {', '.join(BUILTIN_FAMILIES)} or 'package.module:ClassName'"
        raise ConfigError(msg)
    return _import_family(name)


def load_family(config: Config) -> ModelFamily:
    """The family of `config` (model.family), built on that config (ConfigError when it cannot model
    the config's dataset)."""
    return family_class(config.model.family)(config)
