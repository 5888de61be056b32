#!/usr/bin/env bash
# Issue 18's acceptance on a fresh clone: every command as README.md / docs/deploy.md give it.
set -ux
rm -rf /tmp/clone18 /tmp/my_digits && git clone -q /work/main /tmp/clone18 && cd /tmp/clone18
git log --oneline -1
date
python export_model.py --checkpoint results/mnist/ram_6_8x8_1/model.pdparams --output exported/ram_6 2>&1 | grep -v Warning | grep -v warnings.warn
python - <<'EOF'
import os; from PIL import Image; from data_loader import read_digits
for split, count in (("train", 3000), ("test", 500)):
    images, labels = read_digits("data/MNIST", split)
    for i in range(count):
        os.makedirs(f"../my_digits/{split}/{labels[i]}", exist_ok=True)
        Image.fromarray(images[i]).save(f"../my_digits/{split}/{labels[i]}/{i}.png")
EOF
# ../my_digits is /tmp/my_digits: the clone lives in /tmp
ls ../my_digits/test/7 | head -3; ls ../my_digits/test/7 | wc -l
# A folder of PNG digits: all the 7s of the folder's test split.
python infer.py --model_dir exported/ram_6 --images ../my_digits/test/7 > /tmp/infer_pngs.jsonl 2>/tmp/infer_pngs.err; echo "exit $?"
head -3 /tmp/infer_pngs.jsonl; wc -l < /tmp/infer_pngs.jsonl
python -c "import json; lines=[json.loads(l) for l in open('/tmp/infer_pngs.jsonl')]; print('class 7 for', sum(l['class']=='7' for l in lines), 'of', len(lines))"
# An .npz of the first 1,000 MNIST test digits.
python -c "from data_loader import read_digits; import numpy as np; x, y = read_digits('data/MNIST', 'test'); np.savez('/tmp/digits.npz', images=x[:1000], labels=y[:1000])"
python infer.py --model_dir exported/ram_6 --images /tmp/digits.npz --glimpses /tmp/first.gif > /tmp/infer_npz.jsonl 2>/tmp/infer_npz.err; echo "exit $?"
head -2 /tmp/infer_npz.jsonl; cat /tmp/infer_npz.err | grep -v Warn | grep -v warnings.warn
python -c "
import json, numpy as np
y = np.load('/tmp/digits.npz')['labels']
lines = [json.loads(l) for l in open('/tmp/infer_npz.jsonl')]
print('wrong', sum(l['class'] != str(t) for l, t in zip(lines, y)), 'of', len(lines))"
# Train on the image folder and test it (the README's worked example).
python main.py --dataset folder --data_dir ../my_digits --epochs 20 --lr_schedule cosine --init_lr 1e-3 --std 0.1 2>/dev/null | grep -E "^\[|^epoch (1|5|10|15|20) "
python main.py --dataset folder --data_dir ../my_digits --is_train=False --std 0.1 2>/dev/null
python export_model.py --checkpoint ckpt/ram_6_8x8_1_my_digits28_model_best.pdparams --output exported/my_digits 2>&1 | grep "^\["
python infer.py --model_dir exported/my_digits --images ../my_digits/test/7 2>/dev/null | head -2
# Two data-parallel processes: an epoch, then resumed for another.
python -m paddle.distributed.launch --nproc_per_node 2 --log_dir logs/launch main.py --epochs 1 > /tmp/dp1.txt 2>&1; echo "exit $?"
grep -E "^\[|^epoch" /tmp/dp1.txt
python -m paddle.distributed.launch --nproc_per_node 2 --log_dir logs/launch main.py --epochs 2 --resume=True --best=False > /tmp/dp2.txt 2>&1; echo "exit $?"
grep -E "^\[|^epoch" /tmp/dp2.txt
cut -c1-160 logs/ram_6_8x8_1.log
ls ckpt
git status --porcelain; echo "git status printed the above (nothing = clean)"
date
