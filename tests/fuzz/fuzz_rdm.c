/* A CIFD rate-distortion module's folder, as an assistant's final/ is read:
 * config.json (its widths) and model.safetensors (its weights). Input:
 * config.json, "\n#weights\n", model.safetensors. A module that loads is
 * evaluated on two rows of ones (its weights may be anything: NaN, Inf). */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "clipkd/rdm.h"

FUZZ_TARGET(rdm)
{
    const uint8_t *cfg, *weights;
    size_t n_cfg, n_weights;
    fuzz_split(data, size, "\n#weights\n", &cfg, &n_cfg, &weights, &n_weights);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rdm", fuzz_dir());
    mkdir(dir, 0700);
    if (!fuzz_file("rdm/config.json", cfg, n_cfg) || !fuzz_file("rdm/model.safetensors", weights, n_weights))
        return 0;
    ckd_error err;
    ckd_rdm *r = ckd_rdm_load(dir, NULL, &err);
    if (r) {
        int64_t d = ckd_rdm_config_of(r)->in_dim;
        float *x = d > 0 && d <= (1 << 16) ? malloc(2 * (size_t)d * sizeof *x) : NULL;
        for (int64_t i = 0; x && i < 2 * d; i++)
            x[i] = 1.0f;
        ckd_rdm_report rep;
        const int32_t labels[2] = {0, 0}; /* class 0 exists whenever the module has a head */
        if (x)
            ckd_rdm_evaluate(r, x, labels, 2, &rep, &err);
        free(x);
        ckd_rdm_free(r);
    }
    return 0;
}
