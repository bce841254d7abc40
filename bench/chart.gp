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
plot for [i=2:*] data using i:xtic(1) title columnhead(i)
