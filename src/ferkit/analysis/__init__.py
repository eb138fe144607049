"""Looking into models: ``study`` runs occlusion studies (fine-tune per mask, evaluate under every mask);
``explain`` computes heatmaps of where a model looks (Grad-CAM, saliency, SmoothGrad, occlusion)."""
