/* What the imagenet reader's two files share: synset ids and the ground
 * truth of ImageNet-1k's flat validation folder. Not installed. */
#ifndef CKD_IMAGENET_INTERNAL_H
#define CKD_IMAGENET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data_internal.h"

/* ImageNet-1k has 1,000 classes; sorted by wnid they give the labels that
 * torchvision, open_clip and CLIP's class names use. */
#define CKDD_INET_CLASSES 1000

/* 1 if s[0..n) is a WordNet synset id as ImageNet writes it: "n" and eight
 * digits (n01440764). */
int ckdd_inet_is_wnid(const char *s, size_t n);

/* The index of wnid in a sorted list, or -1. */
int32_t ckdd_inet_find(char *const *sorted, size_t n, const char *wnid);

/* One line of a ground-truth file: the image's file name without its
 * extension, its class as an index into the sorted 1,000 wnids, and where
 * it was said. */
typedef struct ckdd_inet_truth_line {
    char *stem;
    int32_t k1;
    size_t line;
    int used;               /* an image was matched to it */
} ckdd_inet_truth_line;

typedef struct ckdd_inet_truth {
    ckdd_inet_truth_line *v;        /* sorted by stem */
    size_t n;
    const char *format;             /* as detected: "devkit", "wnids", "kaggle", "caffe" */
} ckdd_inet_truth;

/* Reads a ground-truth file in `format` ("auto" tells it from the first
 * line). wnids1k: the sorted 1,000 wnids; devkit_file: the 1,000 wnids in
 * ILSVRC2012_ID order, read only for the devkit format. */
int ckdd_inet_truth_load(const char *path, const char *format, char *const *wnids1k,
                         const char *devkit_file, ckdd_inet_truth *out, ckd_error *err);

/* The line for an image's file name (its extension is ignored), or NULL. */
ckdd_inet_truth_line *ckdd_inet_truth_find(const ckdd_inet_truth *t, const char *name);

void ckdd_inet_truth_free(ckdd_inet_truth *t);

#endif
