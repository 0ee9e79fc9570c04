/* cli.h - subcommands that live in their own files under tools/ (each file one
 * command family); tools/herd.c dispatches to them. Each returns the exit code and
 * reports failures as one line `herd: ...` on stderr. */
#ifndef HERD_CLI_H
#define HERD_CLI_H

/* the model the commands load without -m: the one committed with herd */
#define DEFAULT_MODEL "models/default"

int cmd_serve(int argc, char **argv);     /* tools/cmd_serve.c */
int cmd_train(int argc, char **argv);     /* tools/cmd_train.c */
int cmd_data(int argc, char **argv);      /* tools/cmd_data.c */
int cmd_tokenizer(int argc, char **argv); /* tools/cmd_tokenizer.c */

#endif
