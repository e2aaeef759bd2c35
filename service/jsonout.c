/* jsonout.c - writing JSON strings (jsonout.h). */
#include "jsonout.h"

#include <string.h>

void sdm_json_write_strn(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void sdm_json_write_str(FILE *f, const char *s)
{
    sdm_json_write_strn(f, s, strlen(s));
}
