/* demo_main.c - `sediment-demo`: the demo's command line as its own program (demo.c); what
 * `sediment demo` runs. */
#include "demo.h"

int main(int argc, char **argv)
{
    return sdm_demo_main(argc, argv);
}
