"""A real-content test clip that needs no shared file: a photograph bundled with scikit-image,
seen through a camera that pans, rotates and zooms smoothly (one affine warp per frame)."""

import numpy as np


def photo_clip(num_frames: int, height: int, width: int, photo: str = "astronaut",
               speed: float = 1.0) -> np.ndarray:
    """``[num_frames, height, width, 3]`` uint8 frames of ``skimage.data.<photo>()``."""
    import cv2
    import skimage.data

    img = np.ascontiguousarray(getattr(skimage.data, photo)()[..., :3])
    ih, iw = img.shape[:2]
    frames = []
    for t in range(num_frames):
        u = speed * t
        angle = 8.0 * np.sin(u / 9.0)
        zoom = 1.0 + 0.2 * np.sin(u / 13.0)
        cx = iw / 2 + 0.12 * iw * np.sin(u / 11.0)
        cy = ih / 2 + 0.10 * ih * np.cos(u / 7.0)
        m = cv2.getRotationMatrix2D((cx, cy), angle, zoom * min(height / ih, width / iw) * 1.6)
        m[:, 2] += [width / 2 - cx, height / 2 - cy]
        frames.append(cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)
