/* bench/onnxruntime.h — ONNX Runtime as a bench-only peer: the engine most
 * used for CLIP inference on CPUs, run from Node.js through npm's
 * onnxruntime-node package (CPU execution provider). Never a dependency:
 * when node or the package is missing, benches print a note and skip it.
 * Install: ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node, in
 * the build directory (or anywhere on NODE_PATH); docs/performance.md. */
#ifndef CKD_BENCH_ONNXRUNTIME_H
#define CKD_BENCH_ONNXRUNTIME_H

/* NULL when node can load onnxruntime-node from the current directory or
 * NODE_PATH; else why not (for the skip note). The version is in *version. */
const char *bench_ort_missing(char *version, int cap);

/* Times the ONNX model at path (input "image" [B, 3, S, S], batch dynamic)
 * on the given intra-op threads: the median of 3 runs at batch 16 and of 9
 * at batch 1, each after a warm-up. 0 on success. */
int bench_ort_vit(const char *path, int image_size, int threads, double *b16, double *b1);

#endif
