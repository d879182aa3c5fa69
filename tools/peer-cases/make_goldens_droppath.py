#!/usr/bin/env python3
"""Golden test vectors from the OFFICIAL SparK pretraining code (run via spark_peer.py + timm_shim).

Writes goldens/<case>.safetensors (F32 only, hand-written safetensors; see safetensors_io.py).
Every key is documented in goldens/README.md. Run:  python3 make_goldens.py [case ...]
"""
import copy
import json
import os
import sys
import time

import torch
import torch.nn as nn

import spark_peer as P
from safetensors_io import save_f32

OUT = os.path.join(P.HERE, 'goldens')
B, INPUT = 2, 128
LAMB_CFG = dict(lr=1e-3, wd=0.04, betas=(0.9, 0.95), max_grad_norm=5.0)
DEPRECATED_BUFFERS = ('imn_m', 'imn_s', 'norm_black')  # SparK registers these but never uses them (imn_* are torch.empty garbage)

E = 'sparse_encoder.sp_cnn.'
RESNET_PICK = [E + 'conv1.weight', E + 'layer2.0.bn1.weight', E + 'layer1.0.conv2.weight',
               'densify_norms.0.weight', 'densify_projs.0.weight', 'densify_projs.1.weight',
               'mask_tokens.0', 'mask_tokens.1', 'mask_tokens.2', 'mask_tokens.3',
               'dense_decoder.dec.4.up_sample.weight', 'dense_decoder.dec.0.conv.1.weight',
               'dense_decoder.proj.weight', 'dense_decoder.proj.bias']
CONVNEXT_PICK = [E + 'downsample_layers.0.0.weight', E + 'downsample_layers.0.1.weight',
                 E + 'stages.2.1.norm.weight', E + 'stages.2.1.dwconv.weight', E + 'stages.2.1.pwconv1.weight',
                 E + 'stages.2.1.gamma',
                 'densify_norms.0.weight', 'densify_projs.1.weight',
                 'mask_tokens.0', 'mask_tokens.1', 'mask_tokens.2', 'mask_tokens.3',
                 'dense_decoder.dec.4.up_sample.weight', 'dense_decoder.dec.0.conv.1.weight',
                 'dense_decoder.proj.weight', 'dense_decoder.proj.bias']

CASES = {
    # (a) as briefed: full-width timm-style resnet18 (11.2M encoder params -> large file)
    'resnet18': dict(
        seed=0, densify_norm='bn', dec_width=256, pick=RESNET_PICK,
        enc_ctor="timm.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.0)",
        enc=lambda: P.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.0)),
    # (b) as briefed: small ConvNeXt from official models/convnext.py; dims[-1]=256 == decoder width -> densify_projs[0] is nn.Identity
    'convnext_d1121_w32': dict(
        seed=1, densify_norm='ln', dec_width=256, pick=CONVNEXT_PICK,
        enc_ctor="models.convnext.ConvNeXt(depths=[1,1,2,1], dims=[32,64,128,256], drop_path_rate=0.0, sparse=True, num_classes=0, global_pool='')",
        enc=lambda: P.ConvNeXt(depths=[1, 1, 2, 1], dims=[32, 64, 128, 256], drop_path_rate=0.0, sparse=True, num_classes=0, global_pool='')),
    # small variants (same code paths, ~1-3 MB): narrow resnet18 topology (shim-only `channels`/`stem_width` kwargs)
    'resnet18_narrow': dict(
        seed=2, densify_norm='bn', dec_width=64, pick=RESNET_PICK,
        enc_ctor="timm.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.0, stem_width=16, channels=(16,32,64,128))  # shim-only kwargs",
        enc=lambda: P.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.0, stem_width=16, channels=(16, 32, 64, 128))),
    'convnext_narrow': dict(
        seed=3, densify_norm='ln', dec_width=64, pick=CONVNEXT_PICK,
        enc_ctor="models.convnext.ConvNeXt(depths=[1,1,2,1], dims=[8,16,32,64], drop_path_rate=0.0, sparse=True, num_classes=0, global_pool='')",
        enc=lambda: P.ConvNeXt(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64], drop_path_rate=0.0, sparse=True, num_classes=0, global_pool='')),
    # drop path ON (added for sparkmim issue 11): torch's draws cannot be reproduced, so the per-sample keep
    # decisions of every DropPath call are stored (drop_path.keep.<pass>, one row per DropPath with rate > 0,
    # in call order; module names in metadata drop_path_modules) and replayed by the TS test.
    'resnet18_tiny_droppath': dict(
        seed=4, densify_norm='bn', dec_width=32, pick=RESNET_PICK, batch=4, input=64, drop_path=0.5,
        enc_ctor="timm.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.5, stem_width=8, channels=(8,16,32,64))  # shim-only kwargs",
        enc=lambda: P.create_model('resnet18', pretrained=False, num_classes=0, global_pool='', drop_path_rate=0.5, stem_width=8, channels=(8, 16, 32, 64))),
    'convnext_tiny_droppath': dict(
        seed=5, densify_norm='ln', dec_width=32, pick=CONVNEXT_PICK, batch=4, input=64, drop_path=0.5,
        enc_ctor="models.convnext.ConvNeXt(depths=[1,1,2,1], dims=[8,16,32,64], drop_path_rate=0.5, sparse=True, num_classes=0, global_pool='')",
        enc=lambda: P.ConvNeXt(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64], drop_path_rate=0.5, sparse=True, num_classes=0, global_pool='')),
}


# ---- drop path capture (sparkmim issue 11) ----
from timm.models.layers import DropPath  # the shim's timm 0.5.4 DropPath, used by the official encoder.py and timm ResNet
DROP_CALLS = []          # (module name, keep decisions [B]) of the current forward pass, in call order
_orig_bernoulli_ = torch.Tensor.bernoulli_


def _recording_bernoulli_(self, *args, **kwargs):
    out = _orig_bernoulli_(self, *args, **kwargs)
    DROP_CALLS.append(['?', out.detach().flatten().clone()])
    return out


torch.Tensor.bernoulli_ = _recording_bernoulli_


def name_drop_paths(model):
    for name, mod in model.named_modules():
        if isinstance(mod, DropPath):
            def pre(m, inp, name=name):
                if m.training and m.drop_prob > 0:
                    DROP_CALLS.append([name, None])
            mod.register_forward_pre_hook(pre)


def take_drop_calls():
    """[(name, keep[B])] of the pass just run: each pre-hook entry is followed by its bernoulli_ draw."""
    calls = []
    for i in range(0, len(DROP_CALLS), 2):
        (name, none), (q, keep) = DROP_CALLS[i], DROP_CALLS[i + 1]
        assert none is None and q == '?', DROP_CALLS
        calls.append((name, keep))
    DROP_CALLS.clear()
    return calls


def store_drop_calls(T, meta_extra, pass_index, calls):
    if not calls:
        return
    T[f'drop_path.keep.{pass_index}'] = torch.stack([keep for _, keep in calls])
    meta_extra['drop_path_modules'] = json.dumps([name for name, _ in calls])


def build(cfg):
    global B, INPUT
    B, INPUT = cfg.get('batch', 2), cfg.get('input', 128)  # per-case overrides of batch and input size
    torch.manual_seed(cfg['seed'])
    cnn = cfg['enc']()
    enc = P.SparseEncoder(cnn, input_size=INPUT, sbn=False, verbose=False)
    dec = P.LightDecoder(enc.downsample_raito, width=cfg['dec_width'], sbn=False)
    model = P.SparK(sparse_encoder=enc, dense_decoder=dec, mask_ratio=cfg.get('mask_ratio', 0.6), densify_norm=cfg['densify_norm'], sbn=False)
    return model


PERTURB_DOC = ('After the official init, every parameter/buffer listed here was re-drawn (torch.Generator seeded with case seed+100) '
               'so that no branch is a no-op (official init has zero BN gammas on residual branches via timm zero_init_last_bn, '
               'ConvNeXt layer-scale gamma=1e-6, zero conv/linear biases, unit/zero running stats): '
               'all BatchNorm weight~U(0.5,1.5), bias~N(0,0.1), running_mean~N(0,0.1), running_var~U(0.5,1.5); '
               'all LayerNorm weight~U(0.5,1.5), bias~N(0,0.1); ConvNeXt gamma~U(0.5,1.0); '
               'every Conv2d/ConvTranspose2d/Linear bias~N(0,0.05); mask_tokens~N(0,0.5). Conv/Linear weights keep the official init. '
               'The TS port must LOAD param.* (never re-init) when checking these vectors.')


@torch.no_grad()
def perturb(model, seed):
    g = torch.Generator().manual_seed(seed + 100)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.uniform_(0.5, 1.5, generator=g); m.bias.normal_(0, 0.1, generator=g)
            m.running_mean.normal_(0, 0.1, generator=g); m.running_var.uniform_(0.5, 1.5, generator=g)
        elif isinstance(m, nn.LayerNorm):
            m.weight.uniform_(0.5, 1.5, generator=g); m.bias.normal_(0, 0.1, generator=g)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
            m.bias.normal_(0, 0.05, generator=g)
    for name, p in model.named_parameters():
        if name.endswith('.gamma'):
            p.uniform_(0.5, 1.0, generator=g)
        elif name.startswith('mask_tokens.'):
            p.normal_(0, 0.5, generator=g)


def run_case(name, cfg):
    t0 = time.time()
    model0 = build(cfg)
    name_drop_paths(model0)  # deepcopy keeps the hooks
    meta_extra = {}
    DROP_CALLS.clear()
    perturb(model0, cfg['seed'])
    model0.train()
    T = {}
    sd0 = model0.state_dict()
    int_keys, excluded = [], {}
    for k, v in sd0.items():
        if k in DEPRECATED_BUFFERS:
            excluded[k] = list(v.shape)
            continue
        if not v.is_floating_point():
            int_keys.append(k)
        T['param.' + k] = v.detach().clone().float()

    # inputs + mask (mask from the official SparK.mask with a seeded generator)
    g = torch.Generator().manual_seed(cfg['seed'] + 1000)
    inp = torch.randn(B, 3, INPUT, INPUT, generator=g)
    f = model0.fmap_h
    gm = torch.Generator().manual_seed(cfg['seed'] + 2000)
    noise = torch.rand(B, f * f, generator=torch.Generator().set_state(gm.get_state()))
    active = model0.mask(B, 'cpu', generator=gm)  # (B,1,f,f) bool
    chk = torch.zeros(B, f * f, dtype=torch.bool).scatter_(1, noise.argsort(dim=1)[:, :model0.len_keep], True)
    assert torch.equal(chk.view(B, 1, f, f), active)
    assert int(active.sum()) == B * model0.len_keep
    T['input'] = inp
    T['active'] = active.float()
    T['mask.noise'] = noise

    # ---- A: train-mode forward/backward (captures encoder outputs, decoder inputs, reconstruction) ----
    m = copy.deepcopy(model0).train()
    cap = {}
    m.sparse_encoder.register_forward_hook(lambda mod, i, o: cap.__setitem__('enc', [t.detach().clone() for t in o]))
    m.dense_decoder.register_forward_hook(lambda mod, i, o: cap.update(
        dec_in=[None if t is None else t.detach().clone() for t in i[0]], rec=o.detach().clone()))
    loss = m(inp, active_b1ff=active, vis=False)
    store_drop_calls(T, meta_extra, 0, take_drop_calls())
    loss.backward()
    T['loss'] = loss.detach()
    for i, t in enumerate(cap['enc']):
        T[f'enc.{i}'] = t
    for i, t in enumerate(cap['dec_in']):
        T[f'dec_in.{i}'] = t
    T['rec'] = cap['rec']
    names = [n for n, _ in m.named_parameters()]
    params = dict(m.named_parameters())
    for n in cfg['pick']:
        T['grad.' + n] = params[n].grad.detach().clone()
    T['grad_norms'] = torch.stack([params[n].grad.detach().norm(2) for n in names])
    for k, v in m.state_dict().items():
        if 'running_' in k or 'num_batches_tracked' in k:
            T['after_fwd.' + k] = v.detach().clone().float()

    # ---- LAMB: two steps on the same batch/mask (betas cancel at step 1 thanks to bias correction) ----
    opt = P.make_lamb(m, lr=LAMB_CFG['lr'], wd=LAMB_CFG['wd'], betas=LAMB_CFG['betas'], max_grad_norm=LAMB_CFG['max_grad_norm'])
    group_names = [[n for n, p in m.named_parameters() if any(p is q for q in g_['params'])] for g_ in opt.param_groups]
    group_desc = [dict(weight_decay=g_['weight_decay'], lr=g_['lr'], n_params=len(g_['params']), names=gn)
                  for g_, gn in zip(opt.param_groups, group_names)]
    opt.step()
    T['lamb.global_grad_norm_step1'] = torch.tensor(opt.global_grad_norm)
    for n in cfg['pick']:
        T['step1.' + n] = params[n].detach().clone()
    opt.zero_grad()
    loss2 = m(inp, active_b1ff=active, vis=False)
    store_drop_calls(T, meta_extra, 1, take_drop_calls())
    loss2.backward()
    T['loss_step1'] = loss2.detach()
    opt.step()
    T['lamb.global_grad_norm_step2'] = torch.tensor(opt.global_grad_norm)
    for n in cfg['pick']:
        T['step2.' + n] = params[n].detach().clone()

    # ---- vis=True (train mode, fresh copy of the initial state) ----
    mv = copy.deepcopy(model0).train()
    with torch.no_grad():
        vi, vm, vr = mv(inp, active_b1ff=active, vis=True)
    take_drop_calls()  # the vis pass's draws: not stored (the vis.* keys are left out of drop-path cases)
    T['vis.inp'], T['vis.masked'], T['vis.rec_or_inp'] = vi, vm, vr

    # ---- eval mode (running stats = param.* values) ----
    me = copy.deepcopy(model0).eval()
    cap_e = {}
    me.sparse_encoder.register_forward_hook(lambda mod, i, o: cap_e.__setitem__('enc', [t.detach().clone() for t in o]))
    with torch.no_grad():
        T['loss_eval'] = me(inp, active_b1ff=active, vis=False)
    assert not DROP_CALLS, 'eval mode must not draw'
    for i, t in enumerate(cap_e['enc']):
        T[f'enc_eval.{i}'] = t

    meta = {
        'case': name,
        'generator': 'shared/peer/make_goldens.py (official keyu-tian/SparK pretrain code + own timm 0.5.4 shim)',
        'official_commit': P.official_commit(),
        'torch_version': f'{torch.__version__} (Debian python3-torch 1.13.1+dfsg-4, CPU)',
        'utils_misc': P.UTILS_MISC,
        'dtype': 'all tensors F32; integer buffers (num_batches_tracked, int64 in torch) cast to F32: ' + json.dumps(int_keys),
        'layout': 'NCHW activations; PyTorch weight layouts: Conv2d OIHW, ConvTranspose2d (in,out,kH,kW), Linear (out,in), '
                  'mask_tokens (1,C,1,1); active is (B,1,f,f) 0/1 with 1 = visible/kept',
        'seed': str(cfg['seed']),
        'encoder_ctor': cfg['enc_ctor'],
        'sparse_encoder_ctor': f'encoder.SparseEncoder(cnn, input_size={INPUT}, sbn=False, verbose=False)',
        'decoder_ctor': f"decoder.LightDecoder(up_sample_ratio={model0.downsample_raito}, width={cfg['dec_width']}, sbn=False)",
        'spark_ctor': f"spark.SparK(sparse_encoder=enc, dense_decoder=dec, mask_ratio={cfg.get('mask_ratio', 0.6)}, densify_norm='{cfg['densify_norm']}', sbn=False)",
        'batch': str(B), 'input_size': str(INPUT), 'fmap': f'{f}x{f}', 'len_keep': str(model0.len_keep),
        'downsample_ratio': str(model0.downsample_raito),
        'enc_feat_map_chs': json.dumps(model0.sparse_encoder.enc_feat_map_chs if model0.sparse_encoder.enc_feat_map_chs else []),
        'densify_projs': json.dumps([repr(p) for p in model0.densify_projs]),
        'input_gen': f"torch.randn(B,3,H,W, generator=Generator().manual_seed({cfg['seed'] + 1000}))",
        'mask_gen': f"SparK.mask(B,'cpu',generator=Generator().manual_seed({cfg['seed'] + 2000})); mask.noise = the torch.rand(B,f*f) it drew; "
                    f"active = first len_keep indices of noise.argsort(dim=1)",
        'init': PERTURB_DOC,
        'excluded_state_dict_keys': json.dumps(excluded) + ' (deprecated, unused SparK buffers; imn_m/imn_s are uninitialized torch.empty)',
        'param_names': json.dumps(names),  # order of grad_norms
        'lamb': f"utils.lamb.TheSameAsTimmLAMB(get_param_groups(model, nowd_keys={sorted(P.NOWD_KEYS)}), lr={LAMB_CFG['lr']}, "
                f"betas={LAMB_CFG['betas']}, eps=1e-6 (default), max_grad_norm={LAMB_CFG['max_grad_norm']}, weight_decay=0.0) then per group "
                f"lr=lr*lr_scale, weight_decay={LAMB_CFG['wd']}*weight_decay_scale (what lr_wd_annealing does); no lr schedule applied",
        'lamb_param_groups': json.dumps(group_desc),
        'sequence': 'param.* = initial state. A: train fwd (loss, enc.*, dec_in.*, rec) + backward (grad.*, grad_norms, after_fwd.* running stats); '
                    'LAMB step 1 (step1.*); zero_grad; train fwd on same input/mask (loss_step1) + backward; LAMB step 2 (step2.*). '
                    'vis.* and loss_eval/enc_eval.* each from a fresh copy of the initial state.',
    }
    if cfg.get('drop_path'):
        for k in ('vis.inp', 'vis.masked', 'vis.rec_or_inp'):
            del T[k]  # keeps these files small; vis.* is covered by the other cases
    if meta_extra:
        meta_extra['drop_path_rate'] = str(cfg['drop_path'])
        meta_extra['drop_path_doc'] = ('drop_path.keep.<k> [n, B]: the per-sample keep decisions (1 kept, 0 dropped; bernoulli_(1 - rate) '
                                       'before the division by the keep probability) of the n DropPath modules with rate > 0, in call order '
                                       '(names in drop_path_modules), drawn in forward pass k: 0 = A, 1 = the forward before LAMB step 2. '
                                       'No vis.* keys in these cases. Eval mode draws nothing.')
    meta.update(meta_extra)
    path = os.path.join(OUT, f'{name}.safetensors')
    save_f32(path, T, meta)
    print(f'[{name}] loss={loss.item():.7f} loss_step1={loss2.item():.7f} loss_eval={T["loss_eval"].item():.7f} '
          f'gnorm_step1={T["lamb.global_grad_norm_step1"].item():.5f} keys={len(T)} size={os.path.getsize(path) / 2**20:.2f} MiB  ({time.time() - t0:.1f}s)')


if __name__ == '__main__':
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for n in (sys.argv[1:] or list(CASES)):
        run_case(n, CASES[n])
