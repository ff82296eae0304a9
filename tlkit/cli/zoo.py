"""Subcommand zoo: the from-scratch models."""

from tlkit.cli import subcommand


def _configure_zoo(p):
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="output format")


@subcommand("zoo", "list the from-scratch models: name, default input, parameter count")
def cmd_zoo(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.models import zoo

    rows = zoo.table()
    if args.format == "csv":
        print("name,input_shape,num_classes,params,description")
        for r in rows:
            shape = "x".join(map(str, r["input_shape"]))
            print(f"{r['name']},{shape},{r['num_classes']},{r['params']},\"{r['description']}\"")
        return 0
    print(f"{'model':<14} {'input':<12} {'classes':>7} {'params':>13}  description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['name']:<14} {shape:<12} {r['num_classes']:>7} {r['params']:>13,}  "
              f"{r['description']}")
    return 0


cmd_zoo.configure = _configure_zoo
