package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"The shell: bash, zsh or fish."`
}

func (completionCmd) Help() string {
	return `Prints a script that completes fleetctl's commands, flags and flag values
(enums such as --output text|json, files for FILE, directories for DIR) in
bash, zsh or fish. The script is made from this binary's own command line,
so it matches its version; make it again after an upgrade.

  source <(fleetctl completion bash)       # this shell only
  fleetctl completion bash > /usr/share/bash-completion/completions/fleetctl
  fleetctl completion zsh > "${fpath[1]}/_fleetctl"
  fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish

Share, appliance and snapshot names are not completed: the script asks no
agent.`
}

func (c *completionCmd) Run(e env, k *kong.Context) error {
	m := completionModel(k.Model.Node)
	switch c.Shell {
	case "bash":
		return writeBashCompletion(e.stdout, m)
	case "zsh":
		return writeZshCompletion(e.stdout, m)
	default:
		return writeFishCompletion(e.stdout, m)
	}
}

// compCommand is what completion knows of one command of the CLI: its
// path of names from the root ("" for fleetctl itself, "members remove"),
// its subcommands and flags (its parents' too, as kong accepts them),
// and the values its first argument may take.
type compCommand struct {
	path  string
	cmds  []compItem
	flags []compFlag
	args  []string
}

// compItem is a name with its one-line help.
type compItem struct{ name, help string }

// compFlag is a flag: long name, short letter, help, and what its value
// is (see valueKind).
type compFlag struct {
	long  string
	short rune
	help  string
	kind  string
}

// Kinds of flag values.
const (
	kindNone = "none" // takes no value (a bool or a counter)
	kindFile = "file"
	kindDir  = "dir"
	kindText = "text" // anything: nothing to offer
	kindEnum = "enum" // followed by the values: "enum text json"
)

// completionModel walks the visible commands of the CLI, the root first,
// each before its subcommands.
func completionModel(root *kong.Node) []compCommand {
	var out []compCommand
	var walk func(n *kong.Node, path string)
	walk = func(n *kong.Node, path string) {
		c := compCommand{path: path}
		for _, child := range n.Children {
			if child.Hidden || child.Type != kong.CommandNode {
				continue
			}
			c.cmds = append(c.cmds, compItem{child.Name, summary(child.Help)})
			for _, a := range child.Aliases {
				c.cmds = append(c.cmds, compItem{a, summary(child.Help)})
			}
		}
		for _, group := range n.AllFlags(true) {
			for _, f := range group {
				c.flags = append(c.flags, compFlag{long: f.Name, short: f.Short, help: summary(f.Help), kind: valueKind(f)})
				for _, a := range f.Aliases {
					c.flags = append(c.flags, compFlag{long: a, help: summary(f.Help), kind: valueKind(f)})
				}
			}
		}
		if len(n.Positional) > 0 {
			c.args = n.Positional[0].EnumSlice()
		}
		out = append(out, c)
		for _, child := range n.Children {
			if !child.Hidden && child.Type == kong.CommandNode {
				walk(child, strings.TrimSpace(path+" "+child.Name))
			}
		}
	}
	walk(root, "")
	return out
}

// valueKind says what a flag's value is, from its type, enum and
// placeholder: FILE completes files, DIR directories, PATH (a program)
// files.
func valueKind(f *kong.Flag) string {
	switch {
	case f.IsBool() || f.IsCounter():
		return kindNone
	case f.Enum != "":
		return kindEnum + " " + strings.Join(f.EnumSlice(), " ")
	}
	switch f.PlaceHolder {
	case "FILE", "PATH":
		return kindFile
	case "DIR":
		return kindDir
	}
	return kindText
}

// summary is the help cut to its first sentence, for a menu line.
func summary(help string) string {
	help = strings.Join(strings.Fields(help), " ")
	if i := strings.Index(help, ". "); i > 0 {
		help = help[:i+1]
	}
	return help
}

// flagKinds maps each flag (--long and -s) to its kind per command path,
// as case patterns: one "*|FLAG" pattern when every command agrees, else
// one "PATH|FLAG" pattern per command.
func flagKinds(m []compCommand) [][2]string {
	byFlag := map[string]map[string]string{} // flag → path → kind
	var order []string
	add := func(flag, path, kind string) {
		if byFlag[flag] == nil {
			byFlag[flag] = map[string]string{}
			order = append(order, flag)
		}
		byFlag[flag][path] = kind
	}
	for _, c := range m {
		for _, f := range c.flags {
			add("--"+f.long, c.path, f.kind)
			if f.short != 0 {
				add("-"+string(f.short), c.path, f.kind)
			}
		}
	}
	var out [][2]string
	for _, flag := range order {
		kinds := byFlag[flag]
		var first string
		same := true
		for _, k := range kinds {
			if first == "" {
				first = k
			}
			same = same && k == first
		}
		if same {
			out = append(out, [2]string{"*|" + flag, first})
			continue
		}
		for _, c := range m {
			if k, ok := kinds[c.path]; ok {
				out = append(out, [2]string{c.path + "|" + flag, k})
			}
		}
	}
	return out
}

// shQuote quotes s for bash and zsh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fishQuote quotes s for fish.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// names lists the names of items.
func names(items []compItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.name)
	}
	return out
}

// flagWords lists a command's flags as words: --long, and -s for those
// with a short form.
func flagWords(c compCommand) []string {
	var out []string
	for _, f := range c.flags {
		out = append(out, "--"+f.long)
		if f.short != 0 {
			out = append(out, "-"+string(f.short))
		}
	}
	return out
}

// writeShTables writes the functions that bash and zsh scripts share, in
// the syntax both accept: the subcommands of a command path, its
// arguments' values, and the kind of a flag's value.
func writeShTables(b *strings.Builder, prefix string, m []compCommand) {
	fmt.Fprintf(b, "# %s_commands PATH: the subcommands of the command at PATH.\n%s_commands() {\n\tcase \"$1\" in\n", prefix, prefix)
	for _, c := range m {
		if len(c.cmds) > 0 {
			fmt.Fprintf(b, "\t%s) echo %s ;;\n", shQuote(c.path), shQuote(strings.Join(names(c.cmds), " ")))
		}
	}
	b.WriteString("\tesac\n}\n\n")
	fmt.Fprintf(b, "# %s_args PATH: the values the first argument of PATH may take.\n%s_args() {\n\tcase \"$1\" in\n", prefix, prefix)
	for _, c := range m {
		if len(c.args) > 0 {
			fmt.Fprintf(b, "\t%s) echo %s ;;\n", shQuote(c.path), shQuote(strings.Join(c.args, " ")))
		}
	}
	b.WriteString("\tesac\n}\n\n")
	fmt.Fprintf(b, "# %s_value PATH FLAG: what FLAG's value is: none (it takes none), file,\n# dir, text, or enum followed by the values.\n%s_value() {\n\tcase \"$1|$2\" in\n", prefix, prefix)
	for _, fk := range flagKinds(m) {
		pattern := fk[0]
		if strings.HasPrefix(pattern, "*|") {
			pattern = "*" + shQuote(strings.TrimPrefix(pattern, "*"))
		} else {
			pattern = shQuote(pattern)
		}
		fmt.Fprintf(b, "\t%s) echo %s ;;\n", pattern, shQuote(fk[1]))
	}
	b.WriteString("\t*) echo none ;;\n\tesac\n}\n\n")
}

const bashCompletionHead = `# bash completion for fleetctl, made by 'fleetctl completion bash'.
# Load it in this shell with: source <(fleetctl completion bash)
# or install it as /usr/share/bash-completion/completions/fleetctl.

`

const bashCompletionMain = `# _fleetctl_path WORD...: the command path the words name, skipping flags
# and their values (--flag value, and --flag = value as bash splits
# --flag=value).
_fleetctl_path() {
	local path="" kind w
	while (($#)); do
		w=$1
		shift
		case "$w" in
		--*=*) ;;
		-*)
			kind=$(_fleetctl_value "$path" "$w")
			if [[ $kind != none ]]; then
				if [[ ${1-} == = ]]; then shift; fi
				(($#)) && shift
			fi
			;;
		*)
			if [[ " $(_fleetctl_commands "$path") " == *" $w "* ]]; then
				path=${path:+$path }$w
			fi
			;;
		esac
	done
	printf '%s\n' "$path"
}

_fleetctl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev="" flag="" path kind
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()
	if [[ $cur == = ]] && ((COMP_CWORD >= 2)); then
		flag=$prev cur=""
		path=$(_fleetctl_path "${COMP_WORDS[@]:1:COMP_CWORD-2}")
	elif [[ $prev == = ]] && ((COMP_CWORD >= 3)); then
		flag=${COMP_WORDS[COMP_CWORD - 2]}
		path=$(_fleetctl_path "${COMP_WORDS[@]:1:COMP_CWORD-3}")
	else
		[[ $prev == -* ]] && flag=$prev
		path=$(_fleetctl_path "${COMP_WORDS[@]:1:COMP_CWORD-1}")
	fi
	if [[ -n $flag ]]; then
		kind=$(_fleetctl_value "$path" "$flag")
		case "$kind" in
		file)
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			return 0
			;;
		dir)
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -d -- "$cur")
			return 0
			;;
		"enum "*)
			mapfile -t COMPREPLY < <(compgen -W "${kind#enum }" -- "$cur")
			return 0
			;;
		text) return 0 ;;
		esac
	fi
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_fleetctl_flags "$path")" -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -W "$(_fleetctl_commands "$path") $(_fleetctl_args "$path")" -- "$cur")
	fi
	return 0
}

complete -F _fleetctl fleetctl
`

func writeBashCompletion(w io.Writer, m []compCommand) error {
	var b strings.Builder
	b.WriteString(bashCompletionHead)
	writeShTables(&b, "_fleetctl", m)
	b.WriteString("# _fleetctl_flags PATH: the flags of the command at PATH.\n_fleetctl_flags() {\n\tcase \"$1\" in\n")
	for _, c := range m {
		fmt.Fprintf(&b, "\t%s) echo %s ;;\n", shQuote(c.path), shQuote(strings.Join(flagWords(c), " ")))
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString(bashCompletionMain)
	_, err := io.WriteString(w, b.String())
	return err
}

const zshCompletionHead = `#compdef fleetctl
# zsh completion for fleetctl, made by 'fleetctl completion zsh'.
# Install it as _fleetctl in a directory of $fpath, before compinit runs:
#   fleetctl completion zsh > "${fpath[1]}/_fleetctl"
# or load it in this shell (after compinit) with:
#   source <(fleetctl completion zsh)

`

const zshCompletionMain = `# __fleetctl_path WORD...: the command path the words name, skipping flags
# and their values.
__fleetctl_path() {
	local p="" kind w
	while (($#)); do
		w=$1
		shift
		case "$w" in
		--*=*) ;;
		-*)
			kind=$(__fleetctl_value "$p" "$w")
			[[ $kind != none ]] && (($#)) && shift
			;;
		*)
			if [[ " $(__fleetctl_commands "$p") " == *" $w "* ]]; then
				p=${p:+$p }$w
			fi
			;;
		esac
	done
	print -r -- "$p"
}

_fleetctl() {
	local cur=${words[CURRENT]} prev=${words[CURRENT-1]} flag="" p kind
	local -a items
	p=$(__fleetctl_path "${(@)words[2,CURRENT-1]}")
	if [[ $cur == --*=* ]]; then
		flag=${cur%%=*}
		compset -P '*='
	elif [[ $prev == -* ]]; then
		flag=$prev
	fi
	if [[ -n $flag ]]; then
		kind=$(__fleetctl_value "$p" "$flag")
		case "$kind" in
		file) _files; return ;;
		dir) _files -/; return ;;
		"enum "*) compadd -- ${=kind#enum }; return ;;
		text) return 1 ;;
		esac
	fi
	if [[ $cur == -* ]]; then
		items=("${(@f)$(__fleetctl_flag_items "$p")}")
		_describe -t options 'fleetctl flag' items
		return
	fi
	items=("${(@f)$(__fleetctl_command_items "$p")}")
	if ((${#items[@]})) && [[ -n ${items[1]} ]]; then
		_describe -t commands 'fleetctl command' items
		return
	fi
	items=(${=$(__fleetctl_args "$p")})
	((${#items[@]})) && compadd -- "${items[@]}"
}

if [[ $funcstack[1] == _fleetctl ]]; then
	_fleetctl "$@"
else
	compdef _fleetctl fleetctl
fi
`

// zshItem is a name and its description as _describe reads them.
func zshItem(name, help string) string {
	return strings.ReplaceAll(name, ":", `\:`) + ":" + help
}

func writeZshCompletion(w io.Writer, m []compCommand) error {
	var b strings.Builder
	b.WriteString(zshCompletionHead)
	writeShTables(&b, "__fleetctl", m)
	b.WriteString("# __fleetctl_command_items PATH: the subcommands of PATH, NAME:HELP a line.\n__fleetctl_command_items() {\n\tcase \"$1\" in\n")
	for _, c := range m {
		if len(c.cmds) == 0 {
			continue
		}
		var lines []string
		for _, it := range c.cmds {
			lines = append(lines, shQuote(zshItem(it.name, it.help)))
		}
		fmt.Fprintf(&b, "\t%s) print -rl -- \\\n\t\t%s ;;\n", shQuote(c.path), strings.Join(lines, " \\\n\t\t"))
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString("# __fleetctl_flag_items PATH: the flags of PATH, FLAG:HELP a line.\n__fleetctl_flag_items() {\n\tcase \"$1\" in\n")
	for _, c := range m {
		var lines []string
		for _, f := range c.flags {
			lines = append(lines, shQuote(zshItem("--"+f.long, f.help)))
			if f.short != 0 {
				lines = append(lines, shQuote(zshItem("-"+string(f.short), f.help)))
			}
		}
		fmt.Fprintf(&b, "\t%s) print -rl -- \\\n\t\t%s ;;\n", shQuote(c.path), strings.Join(lines, " \\\n\t\t"))
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString(zshCompletionMain)
	_, err := io.WriteString(w, b.String())
	return err
}

const fishCompletionHead = `# fish completion for fleetctl, made by 'fleetctl completion fish'.
# Install it with:
#   fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish

`

const fishCompletionMain = `# __fleetctl_path: the command path the command line names so far,
# skipping flags and their values.
function __fleetctl_path
    set -l p
    set -l skip 0
    set -l words (commandline -opc)
    set -e words[1]
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*'
            case '-*'
                if test (__fleetctl_value "$p" $w) != none
                    set skip 1
                end
            case '*'
                if contains -- $w (__fleetctl_commands "$p")
                    set -a p $w
                end
        end
    end
    echo "$p"
end

# __fleetctl_at PATH: whether the command line is at the command PATH.
function __fleetctl_at
    test (__fleetctl_path) = "$argv[1]"
end

complete -c fleetctl -f
`

func writeFishCompletion(w io.Writer, m []compCommand) error {
	var b strings.Builder
	b.WriteString(fishCompletionHead)
	b.WriteString("# __fleetctl_commands PATH: the subcommands of PATH, one a line.\nfunction __fleetctl_commands\n    switch \"$argv[1]\"\n")
	for _, c := range m {
		if len(c.cmds) > 0 {
			fmt.Fprintf(&b, "        case %s\n            printf '%%s\\n' %s\n", fishQuote(c.path), strings.Join(quoteAll(names(c.cmds), fishQuote), " "))
		}
	}
	b.WriteString("    end\nend\n\n")
	b.WriteString("# __fleetctl_value PATH FLAG: none when FLAG takes no value.\nfunction __fleetctl_value\n    switch \"$argv[1]|$argv[2]\"\n")
	for _, fk := range flagKinds(m) {
		kind := kindText
		if fk[1] == kindNone {
			kind = kindNone
		}
		pattern := fishQuote(fk[0])
		if strings.HasPrefix(fk[0], "*|") {
			pattern = "'*'" + fishQuote(strings.TrimPrefix(fk[0], "*"))
		}
		fmt.Fprintf(&b, "        case %s\n            echo %s\n", pattern, kind)
	}
	b.WriteString("        case '*'\n            echo none\n    end\nend\n\n")
	b.WriteString(fishCompletionMain)
	for _, c := range m {
		cond := fishQuote("__fleetctl_at " + fishQuote(c.path))
		for _, it := range c.cmds {
			fmt.Fprintf(&b, "complete -c fleetctl -n %s -a %s -d %s\n", cond, fishQuote(it.name), fishQuote(it.help))
		}
		if len(c.args) > 0 {
			fmt.Fprintf(&b, "complete -c fleetctl -n %s -a %s\n", cond, fishQuote(strings.Join(c.args, " ")))
		}
		for _, f := range c.flags {
			line := fmt.Sprintf("complete -c fleetctl -n %s -l %s", cond, fishQuote(f.long))
			if f.short != 0 {
				line += " -s " + fishQuote(string(f.short))
			}
			switch {
			case f.kind == kindFile:
				line += " -r -F"
			case f.kind == kindDir:
				line += " -x -a '(__fish_complete_directories (commandline -ct))'"
			case strings.HasPrefix(f.kind, kindEnum+" "):
				line += " -x -a " + fishQuote(strings.TrimPrefix(f.kind, kindEnum+" "))
			case f.kind == kindText:
				line += " -x"
			}
			fmt.Fprintf(&b, "%s -d %s\n", line, fishQuote(f.help))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// quoteAll quotes each of words with quote.
func quoteAll(words []string, quote func(string) string) []string {
	out := slices.Clone(words)
	for i, w := range out {
		out[i] = quote(w)
	}
	return out
}
