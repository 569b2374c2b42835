/* clipkd/clipkd.h — everything a plugin or program needs from libclipkd. */
#ifndef CLIPKD_CLIPKD_H
#define CLIPKD_CLIPKD_H

#include "clipkd/error.h"
#include "clipkd/tensor.h"
#include "clipkd/ops.h"
#include "clipkd/blas.h"
#include "clipkd/gradcheck.h"

#endif
