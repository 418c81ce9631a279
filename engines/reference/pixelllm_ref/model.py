"""The whole PixelLLM reference model: every component as a submodule named by its component name.

Follows `pixel_llm/modeling/pixel_llm.py`: PixelLlmFlaxModel.__call__ (forward_backbones, forward_caption with
forward_prompt_encoder_adapter + maybe_project_visual_feature, forward_point_prediction, forward_mask_decode,
loss_function) and PixelLlmModel.inference (prepare_caption_prediction, autoregressive_predict,
prepare_text_features, predict_points, add_point_detection, pred_mask), for a model without a box decoder.

Shapes: images (B,H,W,3) 0..255 padded bottom/right to image_size, padding_mask (B,H,W) 1 = valid; prompt boxes
(B,P,4) x0,y0,x1,y1 pixels (default: the whole valid image, which is what the official data pipeline gives); text
tokens (B,P,L); everything per prompt comes back as (B,P,...).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import losses as losses_lib
from .decoding import text_inference
from .point_head import boxes_from_points, image_shape_from_padding_mask, token_valid_mask
from .prompt_encoder import boxes_to_points, solid_grid

_CLASSES = {
    "sam_image_encoder": "SamImageEncoder", "eva02_encoder": "Eva02Encoder", "feature_fusion": "FeatureFusion",
    "prompt_encoder": "PromptEncoder", "prompt_adapter": "PromptAdapter", "git_decoder": "GitDecoder", "t5": "T5",
    "point_head": "PointHead", "mask_adapter": "MaskAdapter", "mask_decoder": "MaskDecoder",
    "proposal_head": "ProposalHead",
}


def component_names(cfg: dict) -> list[str]:
    text = cfg["text_decoder"]
    if text not in ("git_decoder", "t5"):
        raise ValueError(f"PixelLLM: unknown text_decoder {text!r}")
    names = ["sam_image_encoder", "eva02_encoder", "feature_fusion", "prompt_encoder", "prompt_adapter", text,
             "point_head", "mask_adapter", "mask_decoder"]
    if "proposal_head" in cfg:  # optional: dense captioning (see proposal_head.py)
        names.append("proposal_head")
    missing = [n for n in names if n not in cfg]
    if missing:
        raise ValueError(f"PixelLLM: config lacks the sections {missing}")
    return names


class PixelLLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.names = component_names(cfg)
        for name in self.names:
            mod = importlib.import_module(f".{name}", __package__)
            self.add_module(name, getattr(mod, _CLASSES[name])(cfg))
        self.image_size = (int(cfg["image_size"]),) * 2
        self.bos, self.eos = int(cfg["bos_token_id"]), int(cfg["eos_token_id"])
        self.max_len = int(cfg["max_caption_length"])

    # ---- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, cfg: dict, tensors: dict) -> "PixelLLM":
        model = cls(cfg)
        sd = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
        own = set(model.state_dict())
        if set(sd) != own:
            raise ValueError(f"PixelLLM: weights do not match the model: missing {sorted(own - set(sd))[:5]}, "
                             f"unexpected {sorted(set(sd) - own)[:5]}")
        model.load_state_dict(sd, strict=True)
        return model.eval()

    @classmethod
    def load(cls, model_dir: str | Path) -> "PixelLLM":
        """A model directory: config.json + model.safetensors."""
        from safetensors.numpy import load_file

        d = Path(model_dir)
        cfg = json.loads((d / "config.json").read_text())
        if cfg.get("format") != "pixelllm":
            raise ValueError(f"{d}/config.json is not a pixelllm config (format={cfg.get('format')!r})")
        return cls.from_tensors(cfg, load_file(str(d / "model.safetensors")))

    @property
    def text(self):
        return getattr(self, self.cfg["text_decoder"])

    # ---- image side --------------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict:
        """forward_backbones + concat_visual_features -> {sam (B,h,w,256), eva02 (B,g,g,C), features (B,g,g,C+256),
        image_hw (B,2) valid (h, w) in pixels}."""
        images = images.to(torch.float32)
        if padding_mask is None:
            padding_mask = torch.ones(images.shape[:3], dtype=torch.float32)
        sam = self.sam_image_encoder(images, padding_mask)
        eva = self.eva02_encoder(images, padding_mask)
        return {"sam": sam, "eva02": eva, "features": self.feature_fusion(eva02_encoder=eva, sam_image_encoder=sam),
                "image_hw": image_shape_from_padding_mask(padding_mask), "padding_mask": padding_mask}

    def default_boxes(self, enc: dict) -> torch.Tensor:
        """(B,1,4): the whole valid image [0, 0, w, h]."""
        hw = enc["image_hw"]
        z = torch.zeros_like(hw[:, 0])
        return torch.stack([z, z, hw[:, 1], hw[:, 0]], dim=-1)[:, None]

    def visual_tokens(self, enc: dict, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """forward_prompt_encoder_adapter (+ T5 projection): (B,P,4) prompt boxes -> (B,P,N,D)."""
        boxes = self.default_boxes(enc) if boxes is None else boxes.to(torch.float32)
        pe = self.prompt_encoder
        sparse = pe.sparse_for_adapter(boxes, self.image_size)
        f = enc["features"]
        return self.prompt_adapter(f, pe.get_dense_pe(f.shape[1], f.shape[2]), sparse, pe.dense_embedding())

    # ---- text side ---------------------------------------------------------------------------------------------
    def _rows(self, enc: dict, visual: torch.Tensor, *per_prompt):
        b, p = visual.shape[:2]
        flat = [None if t is None else t.reshape(b * p, *t.shape[2:]) for t in per_prompt]
        return (b, p, visual.reshape(b * p, *visual.shape[2:]), enc["image_hw"].repeat_interleave(p, dim=0), *flat)

    def teacher_forced(self, enc: dict, visual: torch.Tensor, text_tokens: torch.Tensor,
                       context_tokens: torch.Tensor | None = None) -> dict:
        """forward_caption + forward_point_prediction with given tokens (B,P,L) (the official eval/train pass)."""
        b, p, vis, hw, tok, ctx = self._rows(enc, visual, text_tokens.long(),
                                             None if context_tokens is None else context_tokens.long())
        logits, feats = self.text(vis, ctx, tok)
        coords, plogits = self.point_head(feats, hw)
        split = lambda t: t.reshape(b, p, *t.shape[1:])  # noqa: E731
        return {"text_logits": split(logits), "text_feats": split(feats), "point_coords": split(coords),
                "point_logits": split(plogits)}

    @torch.no_grad()
    def generate(self, enc: dict, visual: torch.Tensor, context_tokens: torch.Tensor | None = None,
                 text_tokens: torch.Tensor | None = None, method: str = "greedy", beam_size: int = 1,
                 per_node_beam_size: int = 2, use_cache: bool = True) -> dict:
        """autoregressive_predict (text_tokens None) or teacher forcing, then prepare_text_features, predict_points,
        add_point_detection. Returns (B,P,...) tensors: text_tokens (cleaned after EOS), log_probs, text_feats,
        point_coords, point_logits, point_valid_mask, detection_boxes."""
        b, p, vis, hw, ctx, tok = self._rows(enc, visual, None if context_tokens is None else context_tokens.long(),
                                             None if text_tokens is None else text_tokens.long())
        out = text_inference(self.text, self.point_head, vis, ctx, hw, bos_id=self.bos, eos_id=self.eos,
                             max_len=self.max_len, point_output_ignore=self.cfg["point_head"]["point_output_ignore"],
                             text_tokens=tok, method=method, beam_size=beam_size,
                             per_node_beam_size=per_node_beam_size, use_cache=use_cache)
        return {k: v.reshape(b, p, *v.shape[1:]) for k, v in out.items()}

    # ---- mask side ---------------------------------------------------------------------------------------------
    def predict_masks(self, enc: dict, boxes: torch.Tensor, visual: torch.Tensor,
                      text_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward_mask_decode + decode_mask: boxes (B,P,4) px, visual tokens (B,P,N,D), text states (B,P,L,D) ->
        low-res mask logits (B,P,4h,4w), IoU predictions (B,P) (best of the decoder's masks by predicted IoU)."""
        pe = self.prompt_encoder
        sparse = pe.embed_boxes(boxes, self.image_size)
        sparse = self.mask_adapter(sparse, visual, text_feats)
        sam = enc["sam"]
        masks, iou = self.mask_decoder.predict(sam, pe.get_dense_pe(sam.shape[1], sam.shape[2]), sparse,
                                               pe.dense_embedding())
        best = iou.argmax(dim=-1, keepdim=True)
        masks = torch.take_along_dim(masks, best[..., None, None], dim=2)[:, :, 0]
        return masks, iou.gather(-1, best)[..., 0]

    # ---- PixelLlmModel.inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def inference(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None,
                  prompt_boxes: torch.Tensor | None = None, context_tokens: torch.Tensor | None = None,
                  text_tokens: torch.Tensor | None = None, with_cap: bool = True, with_mask: bool = True,
                  enc: dict | None = None, **decode) -> dict:
        """with_cap=True: caption each prompt box (whole image by default = image captioning; a user box =
        location-conditioned captioning); with_cap=False: the referring path, `text_tokens` (B,P,L) teacher-forced
        after `context_tokens` ("where is ..."), whose box comes from the points of the token before EOS.
        `decode`: method / beam_size / per_node_beam_size / use_cache for the caption decoder."""
        if not with_cap and text_tokens is None:
            raise ValueError("inference: with_cap=False needs text_tokens (the referring expression)")
        enc = self.encode(images, padding_mask) if enc is None else enc
        visual = self.visual_tokens(enc, prompt_boxes)
        out = self.generate(enc, visual, context_tokens, None if with_cap else text_tokens, **decode)
        out["visual_features"] = visual
        if with_mask:
            out["detection_masks"], out["iou_predictions"] = self.predict_masks(
                enc, out["detection_boxes"], visual, out["text_feats"])
        return out

    # ---- training (PixelLlmFlaxModel.__call__(train=True) + loss_function) ---------------------------------------
    def training_losses(self, images: torch.Tensor, padding_mask: torch.Tensor, text_tokens: torch.Tensor,
                        gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_masks: torch.Tensor | None = None,
                        prompt_boxes: torch.Tensor | None = None, context_tokens: torch.Tensor | None = None,
                        loss_cfg: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Differentiable official training loss (dropout off). text_tokens (B,P,L) ground truth, gt_boxes (B,P,4),
        gt_classes (B,P) (> 0 = valid), gt_masks (B,P,H,W[,1]). Returns (total, metrics incl. `*_scaled`)."""
        lc = dict(losses_lib.DEFAULT_CONFIG, **(loss_cfg or {}))
        enc = self.encode(images, padding_mask)
        visual = self.visual_tokens(enc, prompt_boxes)
        tf = self.teacher_forced(enc, visual, text_tokens, context_tokens)
        valid = gt_classes > 0
        metrics = {"text_loss": losses_lib.text_loss(tf["text_logits"], text_tokens, valid, lc["label_smooth"],
                                                     self.eos, self.cfg["vocab_size"])}
        # get_gt_points_from_boxes: box corners by build_donut_grid(gt_box_points_per_side), tiled over the caption
        if lc["gt_box_points_per_side"] > 2:
            raise ValueError("training_losses: donut grids larger than 2 points per side are not supported")
        gt_points = boxes_to_points(gt_boxes.to(torch.float32),
                                    solid_grid(lc["gt_box_points_per_side"], lc["gt_box_point_with_offset"]))
        gt_points = gt_points[:, :, None].expand(-1, -1, text_tokens.shape[-1], -1, -1)
        point_valid = token_valid_mask(text_tokens.long(), self.cfg["point_head"]["point_output_ignore"], self.bos,
                                       self.eos)
        metrics["point_loss"] = losses_lib.point_loss(tf["point_coords"], point_valid, gt_points,
                                                      point_valid & valid[..., None], lc["point_loss_type"])
        if gt_masks is not None:
            boxes = boxes_from_points(tf["point_coords"], point_valid).detach()  # stop_gradient
            pe = self.prompt_encoder
            sparse = self.mask_adapter(pe.embed_boxes(boxes, self.image_size), visual, tf["text_feats"])
            sam = enc["sam"]
            masks, iou = self.mask_decoder.predict(sam, pe.get_dense_pe(sam.shape[1], sam.shape[2]), sparse,
                                                   pe.dense_embedding())
            metrics.update(losses_lib.sam_mask_loss(masks, iou, gt_masks, valid, enc["padding_mask"]))
        weights = {"text_loss": lc["text_loss_weight"], "point_loss": lc["point_loss_weight"],
                   "mask_loss": lc["mask_loss_weight"]}
        return losses_lib.total_loss(metrics, weights)


def from_golden(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(our config, our tensors) of a golden case (e.g. "bert_s0_h384") through `convert.convert`."""
    from .convert import convert
    from .golden import load_golden

    g = load_golden(name)
    return convert(g.params, g.official_config)
