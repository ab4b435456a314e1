module example.invalid/redrive-filters/route-by-error

go 1.27
