"""Train an auxiliary loss from inside the model, for training loops that only know the task loss.

``attach_aux_loss(output, loss)`` returns ``output`` unchanged; when the task loss is
backpropagated through it, ``loss`` receives a gradient of 1, exactly as if it had been added to
the task loss. One call per forward, so gradient accumulation and DDP see it once per forward, as
they see the task loss. It is not multiplied by an fp16 ``GradScaler``'s scale: with fp16 loss
scaling add the loss explicitly (``model.boundary_loss``) and disable injection, or use bf16.
"""
import torch


class _AttachAuxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: torch.Tensor, aux_loss: torch.Tensor):
        ctx.save_for_backward(aux_loss)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (aux_loss,) = ctx.saved_tensors
        return grad_output, torch.ones_like(aux_loss)


def attach_aux_loss(output: torch.Tensor, aux_loss: torch.Tensor) -> torch.Tensor:
    """``output``, whose backward also backpropagates ``aux_loss`` (a scalar) with weight 1."""
    if not (torch.is_grad_enabled() and aux_loss.requires_grad):
        return output
    return _AttachAuxLoss.apply(output, aux_loss)
