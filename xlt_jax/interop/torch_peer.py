"""The PyTorch peer: Hugging Face `RobertaForMaskedLM` trained the way the reference trains it.

Used to check that xlt_jax learns like the reference (same batches, same optimizer settings, side-by-side
loss curves: `xlt_jax.interop.compare`) and to measure speed against the stack the paper used
(`python -m xlt_jax.bench peer`). The model is built from a config, never downloaded.

The optimizer mirrors `xlt_jax.training.optimizer`: AdamW with decoupled weight decay (not on biases and
LayerNorm weights, as the HF Trainer), global-norm clipping, and xlt_jax's learning-rate schedule itself.
With `masked_only=True` the MLM head runs on the predicted positions only (what xlt_jax does), so a speed
comparison can be made both against Hugging Face as shipped and against the same saving in PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections
import numpy as np

from xlt_jax.data.pretrain.mlm import dense_targets
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.interop import hf_roberta
from xlt_jax.models.presets import ModelSpec
from xlt_jax.training.optimizer import learning_rate_schedule

IGNORE_INDEX = -100


class TorchMlmPeer:
    """One HF RoBERTa MLM model plus its AdamW optimizer, fed xlt_jax batch dicts (NumPy arrays)."""

    def __init__(
        self,
        spec: ModelSpec,
        opt_config: ml_collections.ConfigDict,
        total_steps: int,
        *,
        params: Mapping | None = None,
        masked_only: bool = False,
        threads: int | None = None,
        seed: int = 0,
    ):
        import torch
        from transformers import RobertaForMaskedLM

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch = torch
        self.model = RobertaForMaskedLM(hf_roberta.hf_config(spec, attn_implementation="eager"))
        if params is not None:
            self.load_params(params)
        self.masked_only = masked_only
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(opt_config.weight_decay)},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(opt_config.learning_rate),
            betas=(float(opt_config.b1), float(opt_config.b2)),
            eps=float(opt_config.eps),
        )
        # xlt_jax's own schedule, evaluated on the host: the two runs follow the same learning rates.
        schedule = learning_rate_schedule(opt_config, int(total_steps))
        peak = float(opt_config.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: float(schedule(step)) / peak)
        self.clip_norm = float(opt_config.clip_norm or 0.0)

    # -- weights ------------------------------------------------------------------------------------------
    def load_params(self, params: Mapping) -> None:
        """Copy xlt_jax parameters (pure dict, scanned or looped) into the HF model."""
        converted = hf_roberta.to_hf_state_dict(params)
        state = {k: self.torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in converted.items()}
        self.model.load_state_dict(state, strict=True)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    # -- steps --------------------------------------------------------------------------------------------
    def _loss(self, batch: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(mean loss over predicted positions, number of them), with the head on all or masked positions."""
        torch = self.torch
        ids = torch.from_numpy(np.asarray(batch["input_ids"], dtype=np.int64))
        mask = torch.from_numpy(np.asarray(batch["attention_mask"], dtype=np.int64))
        positions = self._position_ids(batch)
        targets, loss_mask = dense_targets(batch)
        predicted = loss_mask > 0
        labels = np.where(predicted, targets.astype(np.int64), IGNORE_INDEX)
        count = int(predicted.sum())
        if not self.masked_only:
            labels_t = torch.from_numpy(labels)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels_t)
            return out.loss, count
        hidden = self.model.roberta(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        flat = torch.from_numpy(np.flatnonzero(predicted.reshape(-1)))
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat)
        logits = self.model.lm_head(rows)
        target = torch.from_numpy(labels.reshape(-1)[flat.numpy()])
        return torch.nn.functional.cross_entropy(logits, target), count

    def _position_ids(self, batch: Mapping[str, np.ndarray]) -> Any:
        """RoBERTa positions from the attention mask, as xlt_jax computes them.

        HF derives them from `input_ids != <pad>`, so when an MLM random replacement draws `<pad>` (the reference
        draws from every id) that token gets the padding row and every later position shifts by one; passing
        them keeps both models computing the same function.
        """
        mask = np.asarray(batch["attention_mask"], dtype=np.int64)
        return self.torch.from_numpy(np.cumsum(mask, axis=1) * mask + SPECIALS.pad)

    def train_step(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        """One update; returns the batch loss, the pre-clipping gradient norm and the lr used."""
        torch = self.torch
        self.model.train()
        lr = self.scheduler.get_last_lr()[0]
        loss, _ = self._loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in self.model.parameters() if p.grad is not None])
            )
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), "grad_norm": float(norm), "learning_rate": float(lr)}

    def eval_loss(self, batches: Iterable[Mapping[str, np.ndarray]]) -> dict[str, float]:
        """Token-weighted mean loss and accuracy over held-out batches, without dropout."""
        torch = self.torch
        self.model.eval()
        loss_sum = weight = correct = 0.0
        with torch.no_grad():
            for batch in batches:
                ids = torch.from_numpy(np.asarray(batch["input_ids"], dtype=np.int64))
                mask = torch.from_numpy(np.asarray(batch["attention_mask"], dtype=np.int64))
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=self._position_ids(batch)).logits
                targets, loss_mask = dense_targets(batch)
                w = torch.from_numpy(loss_mask.astype(np.float32))
                t = torch.from_numpy(targets.astype(np.int64))
                ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), t, reduction="none")
                loss_sum += float((ce * w).sum())
                weight += float(w.sum())
                correct += float(((logits.argmax(-1) == t).float() * w).sum())
        return {"loss": loss_sum / max(weight, 1.0), "accuracy": correct / max(weight, 1.0)}
