# SPDX-License-Identifier: MIT
# gnuplot -e "data='bench.dat'; out='docs/benchmarks.png'" bench/chart.gp
set terminal pngcairo size 1100,520 font "sans,10"
set output out
set title "Ratio against the best raw server per metric (uds-stream or uds-epoll), same core (>1 is better; clipped at 2.5)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set xtics rotate by -25 noenhanced
set yrange [0:2.5]   # clipped: NNG idle memory (about 27x) would flatten the rest
set grid ytics
set ylabel "ratio"
# One colour per transport (gnuplot's default cycle repeats after eight):
# fourteen, by column, in the order the bench writes them.
array colours[14] = ["#4d4d4d", "#8c8c8c", "#1b9e77", "#66a61e", "#b3b3b3", "#d95f02", "#e7298a", "#7570b3", \
                     "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#33a02c", "#fb9a99"]
plot for [i=2:*] data using i:xtic(1) title columnhead(i) lc rgb colours[(i - 2) % 14 + 1]
