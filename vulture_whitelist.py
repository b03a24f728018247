"""Names vulture reports as unused that something outside calo_ablate's own calls uses: `make lint` runs
`vulture calo_ablate vulture_whitelist.py --min-confidence 60`. Vulture only parses this file. Before you
add a name, check that it is really called from outside (a framework, by name); if nothing is, delete it.
"""

# Lightning calls these hooks of a LightningModule, Callback or LightningDataModule by name
_.on_fit_start
_.on_train_start
_.on_train_epoch_start
_.on_train_epoch_end
_.on_train_batch_start
_.on_validation_epoch_start
_.on_validation_epoch_end
_.validation_step
_.configure_callbacks
_.on_save_checkpoint
_.on_load_checkpoint
_.prepare_data
_.val_dataloader
# Lightning reads Trainer.should_stop (set by model/calodiffusion/early_stopping.py) and calls
# Logger.finalize (runs/resume.py's RunLogger) at the end of fit; bench/profile.py stubs
# LightningModule.log_dict for families whose training_step logs with it
_.should_stop
_.finalize
_.log_dict

# torch: LRScheduler.step() calls get_lr() (model/caloflow/schedule.py)
_.get_lr
# zuko: MonotonicRQSTransform's spline reads the knots horizontal and vertical (model/caloflow/flows.py)
_.horizontal
_.vertical

# pydantic calls these @field_validator / @model_validator methods of the config sections
_._family_section
_._pairs
_._consistent
_._cyclic_peak
_._same_length
_._steps_when_enabled
# ... and those of the registry's entries (study/registry.py)
_._ordered_range
_._dotted_keys
_._derived_trains_once

# dataclass fields read by name, through dataclasses.asdict: bench/worker.py's result of GenerationCost
# (printed by bench/speed.py), study/context.py's StudySettings (to_json, the worker's code check)
ms_per_shower
mflop_per_shower
rss_before_mib
peak_rss_mib
data_source
code_version

# read outside calo_ablate: config.family_names by the mkdocs hook docs/hooks/config_reference.py;
# PreparedData.from_cache by docs/data/preprocessing.md's cache timing and the feature-cache tests;
# runs/faults.POINTS (the fault-injection points) by the kill-at-every-point test, tests/study/test_faults.py
family_names
from_cache
POINTS

# Geometry's per-voxel centres (alpha-major, r-minor: the flat shower layout), public API for analyses;
# tests/test_geometry.py pins the layout by hand with them, tests/data/test_synthetic.py uses eta and phi
_.voxel_r_mid_mm
_.voxel_alpha_rad
_.voxel_eta_mm
_.voxel_phi_mm

# SQLAlchemy pool events (study/forked.py): called by SQLAlchemy with its signature; the connection
# record's dbapi_connection is read by the pool
_note_process
_refuse_inherited
dbapi_connection
