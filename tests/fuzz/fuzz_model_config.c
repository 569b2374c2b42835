/* Model configurations: a CLIP config.json (clipkd's own, or Hugging Face's
 * CLIPConfig, converted), then the same JSON checked against the schema of
 * each model plugin found on CLIPKD_PLUGIN_PATH (clip, resnet), as
 * `student.config` in a recipe is. The model is not built: sizes within the
 * schema's bounds are a recipe's choice. */
#include "fuzz.h"

#include <jansson.h>
#include <stdlib.h>

#include "clipkd/model.h"
#include "clipkd/registry.h"

FUZZ_TARGET(model_config)
{
    static ckd_registry *reg;
    static int tried;
    ckd_error err;
    if (!tried++)
        reg = ckd_registry_open(NULL, &err); /* NULL: schemas unchecked */
    const char *path = fuzz_file("config.json", data, size);
    json_t *cfg = path ? ckd_clip_config_load(path, &err) : NULL;
    json_decref(cfg);
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, 0, &je);
    for (size_t i = 0; reg && j && i < ckd_registry_count(reg); i++) {
        const ckd_plugin *p = ckd_registry_at(reg, i);
        ckd_params *params = ckd_params_for(p, j, "config.json", &err);
        if (params)
            ckd_params_free(params);
    }
    json_decref(j);
    return 0;
}
