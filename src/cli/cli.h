#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H
int corral_cli_run(int argc, char **argv);
int corral_cli_gc(int argc, char **argv);
#endif
