#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: Workflow
label: wordcount
doc: |
  Count the words of a text: split it into words, lower-case them, then in parallel
  count each word (keeping the most frequent ones) and count all the words.

requirements:
  EnvVarRequirement:
    envDef:
      LC_ALL: C  # the same sort order everywhere

inputs:
  text:
    type: File
    doc: A plain text file.
  top:
    type: int
    default: 10
    doc: How many of the most frequent words to keep.

outputs:
  frequent:
    type: File
    outputSource: keep_top/lines
    doc: The most frequent words, with their counts, most frequent first.
  total:
    type: File
    outputSource: count_all/total
    doc: The number of words in the text.

steps:
  split:
    in:
      text: text
    out: [words]
    run:
      class: CommandLineTool
      doc: One word per line (anything but letters separates words).
      baseCommand: [tr, -cs, A-Za-z, "\n"]
      inputs:
        text: File
      stdin: $(inputs.text.path)
      stdout: words.txt
      outputs:
        words: stdout

  lowercase:
    in:
      words: split/words
    out: [lower]
    run:
      class: CommandLineTool
      doc: Lower-case every word.
      baseCommand: [tr, A-Z, a-z]
      inputs:
        words: File
      stdin: $(inputs.words.path)
      stdout: lower.txt
      outputs:
        lower: stdout

  count_each:
    in:
      words: lowercase/lower
    out: [counts]
    run:
      class: CommandLineTool
      doc: Count each word, most frequent first (ties in alphabetical order).
      baseCommand: [sh, -c]
      arguments:
        - sed '/^$/d' "$0" | sort | uniq -c | sort -k1,1nr -k2,2
        - $(inputs.words.path)
      inputs:
        words: File
      stdout: counts.txt
      outputs:
        counts: stdout

  keep_top:
    in:
      counts: count_each/counts
      top: top
    out: [lines]
    run:
      class: CommandLineTool
      doc: Keep the first lines.
      baseCommand: head
      inputs:
        top:
          type: int
          inputBinding: {prefix: -n, position: 1}
        counts:
          type: File
          inputBinding: {position: 2}
      stdout: top-words.txt
      outputs:
        lines: stdout

  count_all:
    in:
      words: lowercase/lower
    out: [total]
    run:
      class: CommandLineTool
      doc: Count all the words.
      baseCommand: [sh, -c]
      arguments:
        - sed '/^$/d' "$0" | wc -l
        - $(inputs.words.path)
      inputs:
        words: File
      stdout: total.txt
      outputs:
        total: stdout
