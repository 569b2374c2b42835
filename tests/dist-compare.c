/* dist-compare RUN_A RUN_B LOSS_TOL WEIGHT_TOL: how far two runs of one
 * recipe are apart — the training loss at every logged step (relative
 * difference) and the final weights (relative L2 over all parameters).
 * tests/test-dist.sh uses it to hold a run on 2 MPI ranks to the same run
 * in one process.
 *
 * The attention key biases (*.k_proj.bias) are reported on their own and
 * not held to WEIGHT_TOL: their exact gradient is zero (a key bias adds
 * q·b to every score of a query's row, which softmax ignores), so what
 * reaches them is rounding, which AdamW's normalisation turns into steps
 * of up to the learning rate in either run. Exit 0 when both figures are
 * within their tolerances, 1 when not, 2 on bad input. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/safetensors.h"

#define MAX_STEPS 100000

static int read_losses(const char *run, double *loss, int64_t *step, int *n)
{
    char path[4200], line[65536];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dist-compare: cannot open %s\n", path);
        return -1;
    }
    *n = 0;
    while (fgets(line, sizeof line, f) && *n < MAX_STEPS) {
        json_t *j = json_loads(line, 0, NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && !strcmp(type, "train")) {
            loss[*n] = json_number_value(json_object_get(j, "loss"));
            step[*n] = json_integer_value(json_object_get(j, "step"));
            (*n)++;
        }
        json_decref(j);
    }
    fclose(f);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: dist-compare RUN_A RUN_B LOSS_TOL WEIGHT_TOL\n");
        return 2;
    }
    double loss_tol = atof(argv[3]), w_tol = atof(argv[4]);
    static double la[MAX_STEPS], lb[MAX_STEPS];
    static int64_t sa[MAX_STEPS], sb[MAX_STEPS];
    int na, nb;
    if (read_losses(argv[1], la, sa, &na) || read_losses(argv[2], lb, sb, &nb))
        return 2;
    if (na != nb || na == 0) {
        fprintf(stderr, "dist-compare: %d logged steps against %d\n", na, nb);
        return 2;
    }
    double worst = 0;
    int64_t worst_step = 0;
    for (int i = 0; i < na; i++) {
        if (sa[i] != sb[i]) {
            fprintf(stderr, "dist-compare: line %d is step %lld in one run, %lld in the other\n", i + 1,
                    (long long)sa[i], (long long)sb[i]);
            return 2;
        }
        double d = fabs(la[i] - lb[i]) / fmax(fabs(la[i]), 1e-30);
        if (d >= worst)
            worst = d, worst_step = sa[i];
    }
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/final/model.safetensors", argv[1]);
    snprintf(pb, sizeof pb, "%s/final/model.safetensors", argv[2]);
    ckd_error err;
    ckd_safetensors *a = ckd_st_open(pa, &err), *b = a ? ckd_st_open(pb, &err) : NULL;
    if (!a || !b) {
        fprintf(stderr, "dist-compare: %s\n", err.msg);
        ckd_st_close(a);
        return 2;
    }
    double num = 0, den = 0, num_k = 0, den_k = 0, kmax = 0;
    int compared = 0;
    for (size_t i = 0; i < ckd_st_count(a); i++) {
        const ckd_st_tensor *ta = ckd_st_at(a, i), *tb = ckd_st_find(b, ta->name);
        if (ta->dtype != CKD_DT_F32 || !tb || tb->dtype != CKD_DT_F32 || ckd_st_numel(ta) != ckd_st_numel(tb)) {
            fprintf(stderr, "dist-compare: tensor %s differs in kind or size\n", ta->name);
            return 2;
        }
        const char *x = ta->data, *y = tb->data; /* a view may be unaligned: copied element by element */
        int key_bias = ends_with(ta->name, "k_proj.bias");
        for (int64_t k = 0; k < ckd_st_numel(ta); k++) {
            float xf, yf;
            memcpy(&xf, x + 4 * k, 4);
            memcpy(&yf, y + 4 * k, 4);
            double d = (double)xf - yf;
            num += d * d;
            den += (double)xf * xf;
            if (key_bias)
                kmax = fmax(kmax, fabs(d));
            else
                num_k += d * d, den_k += (double)xf * xf;
        }
        compared++;
    }
    ckd_st_close(a);
    ckd_st_close(b);
    double rel = sqrt(num / fmax(den, 1e-300)), rel_k = sqrt(num_k / fmax(den_k, 1e-300));
    printf("loss: %d steps, worst relative difference %.2e (step %lld)\n", na, worst, (long long)worst_step);
    printf("weights: %d tensors, relative L2 %.2e; without the attention key biases %.2e (their largest "
           "difference %.2e)\n",
           compared, rel, rel_k, kmax);
    int ok = worst <= loss_tol && rel_k <= w_tol;
    printf("%s (tolerances: loss %.0e, weights %.0e)\n", ok ? "within tolerance" : "NOT within tolerance", loss_tol,
           w_tol);
    return ok ? 0 : 1;
}
