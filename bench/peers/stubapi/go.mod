module kcache.local/bench/peers/stubapi

go 1.25
