/* ONNX Runtime timings through Node.js (see onnxruntime.h). */
#include "config.h"

#include "onnxruntime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pytorch.h"

/* Resolves the package from the current directory's node_modules too (a
 * script file in TMPDIR would not see it). */
static void node_prefix(char *out, size_t cap)
{
    char cwd[1024];
    const char *np = getenv("NODE_PATH");
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    snprintf(out, cap, "NODE_PATH='%s/node_modules%s%s' node", cwd, np && *np ? ":" : "", np && *np ? np : "");
}

const char *bench_ort_missing(char *version, int cap)
{
    char prefix[2048], cmd[2200];
    node_prefix(prefix, sizeof prefix);
    snprintf(cmd, sizeof cmd, "%s -e \"console.log(require('onnxruntime-node').env.versions.common)\" 2>/dev/null",
             prefix);
    if (system("node --version >/dev/null 2>&1") != 0)
        return "node is not installed";
    FILE *p = popen(cmd, "r");
    version[0] = 0;
    if (p) {
        if (!fgets(version, cap, p))
            version[0] = 0;
        pclose(p);
    }
    version[strcspn(version, "\n")] = 0;
    return version[0] ? NULL : "node cannot load onnxruntime-node (install it: docs/performance.md)";
}

static const char ort_js[] =
    "const ort = require('onnxruntime-node');\n"
    "const [model, S, threads] = [process.argv[2], +process.argv[3], +process.argv[4]];\n"
    "(async () => {\n"
    "  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: threads, interOpNumThreads: 1,\n"
    "      executionMode: 'sequential', graphOptimizationLevel: 'all'});\n"
    "  for (const [B, reps] of [[16, 3], [1, 9]]) {\n"
    "    const n = B * 3 * S * S, x = new Float32Array(n);\n"
    "    for (let i = 0; i < n; i++) x[i] = Math.sin(i);\n"
    "    const feeds = {image: new ort.Tensor('float32', x, [B, 3, S, S])}, ts = [];\n"
    "    await s.run(feeds);\n"
    "    for (let r = 0; r < reps; r++) {\n"
    "      const t0 = process.hrtime.bigint(); await s.run(feeds);\n"
    "      ts.push(Number(process.hrtime.bigint() - t0) / 1e9);\n"
    "    }\n"
    "    ts.sort((a, b) => a - b);\n"
    "    console.log('b' + B, ts[reps >> 1]);\n"
    "  }\n"
    "})().catch(e => { console.error(e.message); process.exit(1); });\n";

int bench_ort_vit(const char *path, int image_size, int threads, double *b16, double *b1)
{
    static const char *const keys[] = {"b16", "b1"};
    double v[2];
    char prefix[2048], args[1200];
    node_prefix(prefix, sizeof prefix);
    snprintf(args, sizeof args, "'%s' %d %d", path, image_size, threads);
    if (bench_script_run(prefix, ".js", "", ort_js, args, keys, v, 2))
        return -1;
    *b16 = v[0], *b1 = v[1];
    return 0;
}
