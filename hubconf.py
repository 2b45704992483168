"""torch.hub entry points: one per registered DRIP model.

    model = torch.hub.load('<owner>/<repo>', 'drip_b16_4x', pretrained=False)
    model = torch.hub.load('<owner>/<repo>', 'drip_b16_4x', checkpoint_path='run/model_best.pth.tar')

``pretrained=True`` goes through timm's pretrained machinery (pass ``pretrained_cfg_overlay`` with
a ``file``, ``url`` or ``hf_hub_id``); ``checkpoint_path`` loads weights you trained: a
``train_imagenet.py`` / ``train_clip.py`` checkpoint (a CLIP one contributes its image tower), a
timm checkpoint or a safetensors file.
"""
dependencies = ['torch', 'timm']

import timm as _timm

import drip_timm as _drip_timm
from drip_timm.checkpoint import load_weights as _load_weights


def _entrypoint(name):
    def entrypoint(pretrained=False, checkpoint_path=None, **kwargs):
        model = _timm.create_model(name, pretrained=pretrained, **kwargs)
        if checkpoint_path is not None:
            _load_weights(model, checkpoint_path)
        return model

    entrypoint.__name__ = name
    entrypoint.__doc__ = _timm.models.model_entrypoint(name).__doc__
    return entrypoint


for _name in _drip_timm.DRIP_MODELS:
    globals()[_name] = _entrypoint(_name)
