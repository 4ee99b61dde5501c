"""Dataset readers: MARS-Attribute, the authors' data packages and manifests, all as one ``TrackletSet``; the
frames, augmentation and batches a clip dataset serves."""
