cwlVersion: v1.2
class: CommandLineTool
$namespaces: {cwltool: "http://commonwl.org/cwltool#"}
hints:
  cwltool:Secrets:
    secrets: [password]
baseCommand: [sh, -c, 'echo "length ${#0}" && test "$0" = hunter2']
inputs:
  password: {type: string, inputBinding: {position: 1}}
stdout: out.txt
outputs:
  out: stdout
