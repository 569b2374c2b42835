#include "config.h"
#include <stdio.h>
int main(void) { puts("clipkd " PACKAGE_VERSION); return 0; }
