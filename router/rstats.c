#include "rstats.h"

#include "prom.h"

size_t rstats_render(const rstats *s, char *out, size_t cap)
{
    prom p;
    prom_init(&p, out, cap);
#define RENDER(field, kind, name, help) prom_metric(&p, PROM_##kind, name, help, s->field);
    RSTATS(RENDER)
#undef RENDER
    return prom_end(&p);
}
