#!/usr/bin/env python3
"""Crop boxes (SparK's RandomResizedCrop ranges) and Pillow references for measure.sh: writes cases.json and
pil-N.raw (torchvision's F.resized_crop on a PIL image: img.crop(box).resize((s, s), Image.BICUBIC))."""
import glob, json, os, random, sys
from PIL import Image
random.seed(0)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
files = sys.argv[1:] + sorted(glob.glob(os.path.join(REPO, 'apps/pretrain/data/sample-images/*.jpg')))[::40][:7]
cases = []
for f in files:
    im = Image.open(f).convert('RGB'); W, H = im.size
    for size in ([224, 160] if W > 300 else [224, 64]):
        for k in range(2):
            s = random.uniform(0.67, 1.0); area = s * W * H
            r = random.uniform(3/4, 4/3)
            w = min(W, round((area * r) ** 0.5)); h = min(H, round((area / r) ** 0.5))
            top = random.randint(0, H - h); left = random.randint(0, W - w)
            out = im.crop((left, top, left + w, top + h)).resize((size, size), Image.BICUBIC)
            name = f'pil-{len(cases)}.raw'; open(name, 'wb').write(out.tobytes())
            cases.append(dict(file=f, box=[top, left, h, w], size=size, pil=name, W=W, H=H))
json.dump(cases, open('cases.json', 'w'), indent=1)
