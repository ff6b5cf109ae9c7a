import torch
import torch.nn.functional as F

from heads import Head, register_head
from heads.metrics import ClassificationEvaluator


@register_head("mean_classifier")
class MeanClassifier(Head):
    """Classifies a clip from the mean of its valid trajectory tokens."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.accuracy = ClassificationEvaluator()  # top-1 / top-5, gathered across processes

    def build(self, token_dim: int) -> None:  # called once with the tokenizer's width
        self.classifier = torch.nn.Linear(token_dim, self.num_classes)

    def logits(self, tokens):
        keep = tokens.valid.unsqueeze(-1).float()  # invalid slots hold no trajectory: leave them out
        pooled = (tokens.tokens * keep).sum(1) / keep.sum(1).clamp_min(1)
        return self.classifier(pooled)

    def losses(self, tokens, batch):  # TrajectoryTokens + the batch dict -> named losses, summed
        return {"ce": F.cross_entropy(self.logits(tokens), batch["label"])}

    def update_metrics(self, tokens, batch):
        self.accuracy.update(self.logits(tokens), batch["label"], batch["index"])

    def compute_metrics(self):
        return self.accuracy.compute()

    def reset_metrics(self):
        self.accuracy.reset()
