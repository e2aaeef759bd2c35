#include "testdata.h"
static int reg(void){return 0;}
int main(int argc,char**argv){return test_main(argc,argv,reg);}
