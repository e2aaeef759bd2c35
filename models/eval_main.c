/* eval_main.c - `sediment-eval`: the eval's command line as its own program (eval_cli.c). */
#include "eval.h"

int main(int argc, char **argv)
{
    return sdm_eval_main(argc, argv);
}
