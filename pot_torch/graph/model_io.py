"""Reading models (single or cascade) from OpenVINO IR, writing them back: ``load_model``, ``save_model``."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, List, Optional

import openvino as ov

from pot_torch.graph.hardware.config import check_target_device
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.utils.atomic import atomic_output_files

_EXAMPLE_CONFIG = (
    "example: {'model_name': 'resnet', 'model': 'resnet.xml', 'weights': 'resnet.bin'} "
    "or, for a cascade, {'model_name': 'mtcnn', 'cascade': [{'name': 'pnet', 'model': 'pnet.xml', "
    "'weights': 'pnet.bin'}, {'name': 'rnet', 'model': 'rnet.xml', 'weights': 'rnet.bin'}]} "
    "('weights' is optional: by default the .bin next to the .xml)"
)


def load_model(model_config: Mapping, target_device: str = "ANY") -> CompressedModel:
    """Read IR files into a ``CompressedModel``, as POT's ``load_model`` did.

    :param model_config: a dict or ``AttrDict`` with ``model_name`` and either ``model`` (path of the .xml)
        with optional ``weights`` (the .bin; default: the .bin next to the .xml), or ``cascade``, a list of
        ``{'name', 'model', 'weights'}`` for a cascade of models.
    :param target_device: the device the model will be quantized for (checked here; the model itself is read
        the same way for every device).
    :raises FileNotFoundError: an .xml or .bin file does not exist.
    :raises ValueError: a required key is missing, a path is not an .xml file or ``target_device`` is not
        supported.
    :raises RuntimeError: OpenVINO cannot read the files (corrupt or mismatched .xml/.bin).

    Unlike POT, IR version 10 files are accepted: the current runtime reads them.
    """
    check_target_device(target_device)
    if not isinstance(model_config, Mapping):
        raise TypeError(f"model_config must be a dict, got {type(model_config).__name__}; {_EXAMPLE_CONFIG}")
    model_name = _required(model_config, "model_name", "model_config")
    core = ov.Core()
    # Read weights into memory (as POT did) so the files can be overwritten while the model is in use.
    core.set_property({"ENABLE_MMAP": False})
    cascade = model_config.get("cascade")
    if cascade:
        if not isinstance(cascade, (list, tuple)):
            raise ValueError(f"model_config['cascade'] must be a list of model entries; {_EXAMPLE_CONFIG}")
        members = []
        for index, entry in enumerate(cascade):
            where = f"model_config['cascade'][{index}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where} must be a dict, got {type(entry).__name__}; {_EXAMPLE_CONFIG}")
            name = _required(entry, "name", where)
            members.append({"name": str(name), "model": _read_ir(core, entry, where)})
        return CompressedModel(models=members, model_name=str(model_name))
    _required(model_config, "model", "model_config", " (or 'cascade' for a cascade of models)")
    return CompressedModel(_read_ir(core, model_config, "model_config"), model_name=str(model_name))


def _required(config: Mapping, key: str, where: str, alternative: str = "") -> Any:
    value = config.get(key)
    if value is None or value == "" or (isinstance(value, Mapping) and not value):
        raise ValueError(f"{where} is missing the required key '{key}'{alternative}; {_EXAMPLE_CONFIG}")
    return value


def _read_ir(core: ov.Core, entry: Mapping, where: str) -> ov.Model:
    xml_path = Path(os.path.expanduser(str(_required(entry, "model", where))))
    if xml_path.suffix.lower() != ".xml":
        raise ValueError(
            f"{where}['model'] must be an OpenVINO IR .xml file, got '{xml_path}'; convert other formats "
            "with openvino.convert_model and openvino.save_model, or wrap an openvino.Model in "
            "CompressedModel(model)"
        )
    weights = entry.get("weights")
    bin_path = Path(os.path.expanduser(str(weights))) if weights else xml_path.with_suffix(".bin")
    for key, path in (("model", xml_path), ("weights", bin_path)):
        if not path.exists():
            hint = "" if weights or key == "model" else " (the default next to the .xml; set 'weights')"
            raise FileNotFoundError(f"{where}['{key}']: file '{path}' does not exist{hint}")
        if not path.is_file():
            raise ValueError(f"{where}['{key}']: '{path}' is not a file")
    try:
        return core.read_model(model=str(xml_path), weights=str(bin_path))
    except Exception as error:  # OpenVINO reports parse errors as RuntimeError with a long C++ trace
        detail = " ".join(str(error).split())
        raise RuntimeError(
            f"OpenVINO could not read the IR '{xml_path}' with weights '{bin_path}' (corrupt file, or .xml "
            f"and .bin that do not belong together): {detail}"
        ) from error


def save_model(model: CompressedModel, save_path: os.PathLike | str, model_name: Optional[str] = None,
               for_stat_collection: bool = False) -> List[Dict[str, str]]:
    """Write ``model`` as IR (.xml + .bin) into ``save_path`` and return the file paths, as POT did.

    Weights are written as they are in the model (FP32 stays FP32; no FP16 compression). Every file of the
    call is written under a temporary name beside its target and renamed into place only when all are
    written, so an error leaves existing files untouched and no partial files behind. The in-memory model is
    not modified. Saving the same model twice gives byte-identical files.

    :param model: the ``CompressedModel`` to write.
    :param save_path: the output folder (created if missing).
    :param model_name: the file name without extension (default: ``model.name``). Cascade members are
        written as ``<model_name>_<member>`` (``<member>`` when ``model_name`` is not given).
    :param for_stat_collection: accepted for POT compatibility. POT used it to keep cascade node-name
        prefixes; pot_torch never prefixes names, and always saves every output the model has (including
        outputs added with ``add_outputs``), so the flag changes nothing.
    :return: ``[{'model': xml_path, 'weights': bin_path}]`` for a single model; for a cascade one
        ``{'name': member, 'model': xml_path, 'weights': bin_path}`` per member, in order.
    """
    del for_stat_collection  # documented above: no effect in pot_torch
    if not isinstance(model, CompressedModel):
        raise TypeError(f"save_model expects a CompressedModel, got {type(model).__name__}; wrap an "
                        "openvino.Model with pot_torch.CompressedModel(model)")
    folder = Path(os.path.expanduser(str(save_path)))
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"save_path '{folder}' exists and is not a folder; give a folder path")
    entries = []
    for member in model.models:
        if model.is_cascade:
            name = f"{model_name}_{member['name']}" if model_name else member["name"]
            entry = {"name": member["name"]}
        else:
            name = model_name or model.name
            entry = {}
        _check_file_name(name)
        entry["model"] = os.path.join(str(save_path), name + ".xml")
        entry["weights"] = os.path.join(str(save_path), name + ".bin")
        entries.append(entry)
    folder.mkdir(parents=True, exist_ok=True)
    targets = [Path(entry[key]) for entry in entries for key in ("model", "weights")]
    with atomic_output_files(targets) as temporary:
        for member, xml_path in zip(model.models, temporary[::2]):
            _write_ir(member["model"], xml_path, folder)
    return entries


def _write_ir(ov_model: ov.Model, xml_path: Path, folder: Path) -> None:
    """``ov.save_model`` to ``xml_path`` (and the .bin of the same stem) with errors that say what went wrong.

    :raises PermissionError: the folder cannot be written to.
    :raises RuntimeError: writing failed part way (disk full, file size limit, I/O error).
    """
    try:
        with open(xml_path, "xb"):  # fails with the system's reason (read-only, no permission) before any work
            pass
    except OSError as error:
        raise type(error)(error.errno, f"cannot write the model into save_path '{folder}': {error.strerror}; "
                          "give a folder you can write to (existing files there are unchanged)") from error
    try:
        # writes xml_path and the .bin of the same stem; clones the model internally
        ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise RuntimeError(f"writing the model into save_path '{folder}' failed part way (is the disk full?): "
                      f"{detail}; existing files there are unchanged and no partial files were left") from error


def _check_file_name(name: str) -> None:
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise ValueError(f"cannot save a model under the file name {name!r}: give model_name as a plain file "
                         "name (no folders) and put the folder in save_path")
