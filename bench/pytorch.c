/* PyTorch counterparts of the benches (see pytorch.h). */
#include "config.h"

#include "pytorch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char bench_torch_clip_py[] =
    "import sys, time, torch, torch.nn as nn, torch.nn.functional as F\n"
    "torch.manual_seed(0)\n"
    "class Block(nn.Module):\n"
    "    def __init__(s, C, H, act):\n"
    "        super().__init__(); s.H, s.act = H, act\n"
    "        s.ln1, s.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)\n"
    "        s.q, s.k, s.v, s.o = (nn.Linear(C, C) for _ in range(4))\n"
    "        s.fc1, s.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)\n"
    "    def forward(s, x, causal):\n"
    "        B, T, C = x.shape; h = s.ln1(x)\n"
    "        q, k, v = (f(h).view(B, T, s.H, C // s.H).transpose(1, 2) for f in (s.q, s.k, s.v))\n"
    "        if hasattr(F, 'scaled_dot_product_attention'):\n"
    "            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)\n"
    "        else:  # torch < 2.0 (Debian 12 ships 1.13)\n"
    "            w = (q @ k.transpose(-2, -1)) / (C // s.H) ** 0.5\n"
    "            if causal: w = w.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))\n"
    "            a = w.softmax(-1) @ v\n"
    "        a = a.transpose(1, 2).reshape(B, T, C)\n"
    "        x = x + s.o(a); h = s.fc1(s.ln2(x))\n"
    "        h = h * torch.sigmoid(1.702 * h) if s.act == 'quick_gelu' else F.gelu(h)\n"
    "        return x + s.fc2(h)\n"
    "class CLIP(nn.Module):\n"
    "    def __init__(s, E, S, P, Cv, Lv, Hv, Ct, Lt, Ht, act, T=77):\n"
    "        super().__init__(); N = (S // P) ** 2; s.P = P\n"
    "        s.conv = nn.Conv2d(3, Cv, P, P, bias=False); s.cls = nn.Parameter(torch.randn(Cv))\n"
    "        s.vpos = nn.Parameter(torch.randn(N + 1, Cv)); s.ln_pre, s.ln_post = nn.LayerNorm(Cv), nn.LayerNorm(Cv)\n"
    "        s.vb = nn.ModuleList(Block(Cv, Hv, act) for _ in range(Lv)); s.vproj = nn.Linear(Cv, E, bias=False)\n"
    "        s.tok = nn.Embedding(49408, Ct); s.tpos = nn.Parameter(torch.randn(T, Ct)); s.ln_f = nn.LayerNorm(Ct)\n"
    "        s.tb = nn.ModuleList(Block(Ct, Ht, act) for _ in range(Lt)); s.tproj = nn.Linear(Ct, E, bias=False)\n"
    "        s.scale = nn.Parameter(torch.tensor(2.6592))\n"
    "    def image(s, x):\n"
    "        x = s.conv(x).flatten(2).transpose(1, 2); B = x.shape[0]\n"
    "        x = torch.cat([s.cls.expand(B, 1, -1), x], 1) + s.vpos; x = s.ln_pre(x)\n"
    "        for b in s.vb: x = b(x, False)\n"
    "        return s.vproj(s.ln_post(x[:, 0]))\n"
    "    def text(s, ids):\n"
    "        eot = (ids == 49407).int().argmax(-1); T = int(eot.max()) + 1; ids = ids[:, :T]\n"
    "        x = s.tok(ids) + s.tpos[:T]\n"
    "        for b in s.tb: x = b(x, True)\n"
    "        x = s.ln_f(x); return s.tproj(x[torch.arange(x.shape[0]), eot])\n"
    "def clip_loss(m, x, ids):\n"
    "    i = F.normalize(m.image(x), dim=-1); t = F.normalize(m.text(ids), dim=-1)\n"
    "    l = m.scale.exp() * i @ t.T; y = torch.arange(l.shape[0])\n"
    "    return (F.cross_entropy(l, y) + F.cross_entropy(l.T, y)) / 2\n"
    "def median(f):\n"
    "    f(); ts = []\n"
    "    for _ in range(3):\n"
    "        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)\n"
    "    return sorted(ts)[1]\n";

/* Writes prelude + script to a temporary file with the given suffix, runs
 * "CMD FILE ARGS" and reads "KEY VALUE" lines. */
int bench_script_run(const char *cmd_prefix, const char *suffix, const char *prelude, const char *script,
                     const char *args, const char *const *keys, double *vals, size_t n)
{
    const char *tdir = getenv("TMPDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/clipkd-bench-XXXXXX%s", tdir && *tdir ? tdir : "/tmp", suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fputs(prelude, f);
    fputs(script, f);
    fclose(f);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", cmd_prefix, path, args);
    FILE *p = popen(cmd, "r");
    size_t got = 0;
    char line[512], key[128];
    double v;
    while (p && fgets(line, sizeof line, p))
        for (size_t i = 0; i < n; i++)
            if (sscanf(line, "%127s %lf", key, &v) == 2 && !strcmp(key, keys[i]))
                vals[i] = v, got++;
    if (p)
        pclose(p);
    remove(path);
    return got == n ? 0 : -1;
}

int bench_torch_run(const char *script, const char *args, const char *const *keys, double *vals, size_t n)
{
    /* The first python3 on PATH may be a private interpreter without
     * Debian's packages; the system one is where python3-torch lives. */
    const char *py = NULL;
    static const char *const candidates[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < 2 && !py; i++) {
        char probe[128];
        snprintf(probe, sizeof probe, "%s -c 'import torch' >/dev/null 2>&1", candidates[i]);
        if (system(probe) == 0)
            py = candidates[i];
    }
    if (!py)
        return -1;
    /* PyTorch on the same threads as clipkd: intra-op threads as given,
     * no inter-op pool, and OpenMP told the same. */
    char prefix[160];
    snprintf(prefix, sizeof prefix, "OMP_NUM_THREADS=%d %s", atoi(args) > 0 ? atoi(args) : 1, py);
    return bench_script_run(prefix, ".py", bench_torch_clip_py, script, args, keys, vals, n);
}
